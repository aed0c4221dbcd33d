"""The benchmark's memory sampler: a process of its own, started without copying the benchmark."""

from __future__ import annotations

import threading
import warnings

import psutil

from bench.memory import PeakMemory


def test_the_memory_sampler_is_a_new_python_not_a_fork_of_the_threaded_benchmark() -> None:
    # The benchmark times requests from threads. fork() would copy it with whatever locks those
    # threads hold at that moment, a deadlock in the child (Python 3.12 and later warn of it).
    release = threading.Event()
    busy = threading.Thread(target=release.wait, name="busy", daemon=True)
    busy.start()
    me = psutil.Process()
    before = {child.pid for child in me.children()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            with PeakMemory(me.pid, interval=0.01) as memory:
                started = [child for child in me.children() if child.pid not in before]
                command_lines = [child.cmdline() for child in started]
                first_peak = memory.peak_bytes
    finally:
        release.set()
        busy.join(timeout=5)

    assert started, "no sampler process was started"
    assert me.cmdline() not in command_lines, f"a child runs this process's own command line: {command_lines}"
    # start() returns once the first sample is in: the sampler sees at least this process.
    assert first_peak >= me.memory_info().rss // 2
