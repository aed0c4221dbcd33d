"""The peak memory of a process tree, sampled by a separate process.

Sampling walks /proc for the whole tree, a few milliseconds of Python each time.
In a thread of the benchmark it would hold the GIL while the same process times
API requests, and show up in their p99; a process of its own keeps it out.

That process is a new Python ("spawn"), not a fork: the benchmark runs threads, and
fork() would copy it with whatever locks they hold at that moment, a deadlock in the
child (Python 3.12 and later warn of it).
"""

from __future__ import annotations

import multiprocessing
import signal
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

import psutil

from tutorial.waiting import wait_until

SPAWN = multiprocessing.get_context("spawn")
START_TIMEOUT_S = 30  # a new Python that imports psutil: well under a second, unless the machine is very busy


def tree_rss(pid: int) -> int:
    """Resident memory, in bytes, of a process and all its descendants, summed.

    A forked child shares pages with its parent until either writes to them; RSS
    counts such a page in both, so for a forking pool the sum is an upper bound.
    """
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:  # a child that ended meanwhile, like an RQ work horse
            continue
    return total


def _sample_until_stopped(pid: int, interval: float, sampling: Event, stopped: Event, peak: Synchronized[int]) -> None:
    # Ctrl-C reaches the whole terminal's process group: the benchmark stops this one itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        peak.value = max(peak.value, tree_rss(pid))
        sampling.set()
        if stopped.wait(interval):
            return


class PeakMemory:
    """Sample ``tree_rss(pid)`` every ``interval`` seconds until stopped; keep the largest."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self._sampling = SPAWN.Event()
        self._stopped = SPAWN.Event()
        self._peak = SPAWN.Value("q", 0)
        self._sampler = SPAWN.Process(
            target=_sample_until_stopped,
            args=(pid, interval, self._sampling, self._stopped, self._peak),
            name=f"peak-memory-{pid}",
            daemon=True,
        )

    @property
    def peak_bytes(self) -> int:
        return self._peak.value

    def start(self) -> PeakMemory:
        """Start the sampler; return once it took its first sample (a new Python takes a moment)."""
        self._sampler.start()
        try:
            wait_until(
                lambda: self._sampling.is_set() or not self._sampler.is_alive(),
                timeout=START_TIMEOUT_S,
                what="the memory sampler's first sample",
            )
        finally:
            if not self._sampling.is_set():
                self.stop()
        if not self._sampling.is_set():
            raise RuntimeError(f"the memory sampler exited with {self._sampler.exitcode} before its first sample")
        return self

    def stop(self) -> int:
        self._stopped.set()
        self._sampler.join(timeout=5)
        if self._sampler.is_alive():
            self._sampler.kill()
        return self.peak_bytes

    def __enter__(self) -> PeakMemory:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
