"""Start child processes that are always stopped again, with their output kept.

Every process runs in its own session (process group), so stopping it also stops
whatever it forked (a Celery prefork pool, an RQ work horse). Output goes to a
file rather than a pipe: a pipe nobody reads fills up and freezes the child.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from tutorial.waiting import WaitTimeout, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
P = TypeVar("P", bound="ManagedProcess")


# Below the ports the OS hands out to outgoing connections (from 32768 on Linux, 49152 on
# macOS and Windows), and above the well-known ones the stages use (6379, 8000, ...).
FREE_PORT_RANGE = range(20000, 32768)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now, for a server started a moment later.

    Not one the OS picks (bind to port 0): those come from the range of outgoing
    connections, so in the moment between this check and the server's own bind, any
    connection of any process may take it ("address already in use", seen with six test
    processes). A random port below that range is taken only by another server.
    """
    for _ in range(100):
        port = random.choice(FREE_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: let the OS pick
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _sigint_is_ignored() -> bool:
    """True when this process ignores SIGINT, as a job started in the background (`make test &`) does.

    An ignored signal stays ignored across exec, so every child would ignore Ctrl-C too;
    a handler (Python's KeyboardInterrupt) is reset to the default by exec anyway.
    """
    return signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None)


def _default_sigint() -> None:
    # Runs in the child between fork and exec: only when needed, since it costs the fast path.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class ManagedProcess:
    """A child process with a name, a log file, and a stop() that always works."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] = REPO_ROOT,
        log_dir: str | os.PathLike[str],
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        # The caller owns the folder (a test's tmp_path, a README run's work folder) and removes it.
        self.log_path = Path(log_dir) / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_default_sigint if _sigint_is_ignored() else None,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def is_running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self) -> str:
        """Everything the process has printed so far (stdout and stderr)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self) -> str:
        state = "running" if self.is_running() else f"exited with {self.popen and self.popen.returncode}"
        tail = "\n".join(self.output().splitlines()[-15:])
        return f"{self.name} ({state}); last output:\n{tail}"

    def _check_alive(self, what: str) -> None:
        if not self.is_running():
            raise WaitTimeout(f"{self.name} stopped while waiting for {what}. {self.describe()}")

    def wait_for_output(self, text: str, timeout: float = 15) -> None:
        """Wait until the process has printed ``text``."""

        def printed() -> bool:
            if text in self.output():
                return True
            self._check_alive(repr(text))
            return False

        wait_until(printed, timeout=timeout, what=f"{self.name} to print {text!r}", seen=self.describe)

    def wait_for_http(self, url: str, timeout: float = 15) -> None:
        """Wait until ``url`` answers (any HTTP status counts as an answer)."""

        def answers() -> bool:
            self._check_alive(url)
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False

        wait_until(answers, timeout=timeout, what=f"{self.name} to answer {url}", seen=self.describe)

    def kill(self) -> None:
        """SIGKILL the whole process group at once: no clean-up runs (a crash)."""
        if self.is_running():
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM the process group (as Ctrl-C would, a clean stop), without waiting for it."""
        if self.is_running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)

    def stop(self, grace: float = 5) -> None:
        """SIGTERM the process group, wait ``grace`` seconds, then SIGKILL it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # The leader may be gone while forked children linger: kill the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.popen.poll() is None:
            self.popen.wait(timeout=10)

    def __enter__(self) -> ManagedProcess:
        return self.start() if self.popen is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def stop_all(processes: Iterable[ManagedProcess], grace: float = 5) -> None:
    """Stop several processes at once: SIGTERM to each, then one ``grace`` for all, then SIGKILL.

    A Celery worker takes about a second to shut down cleanly; five of them stopped one
    after the other take five.
    """
    processes = list(processes)
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        process.stop(grace=max(0.0, deadline - time.monotonic()))


class ProcessGroup:
    """Processes started one by one and stopped together (see ``stop_all``), also on failure."""

    def __init__(self) -> None:
        self.processes: list[ManagedProcess] = []

    def start(self, process: P) -> P:
        self.processes.append(process)
        process.start()
        return process

    def stop(self) -> None:
        stop_all(reversed(self.processes))

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def python_command(*args: str) -> list[str]:
    """A command line that runs this virtual environment's Python."""
    return [sys.executable, *args]


class UvicornServer(ManagedProcess):
    """uvicorn serving ``app`` ("package.module:attribute") on 127.0.0.1; start() returns once it answers.

    The one way the demo, the tests and the benchmark start an API: a free port unless
    one is given, and ``ready_path`` polled until it answers or ``timeout`` runs out.
    """

    def __init__(
        self,
        app: str,
        *,
        env: Mapping[str, str] | None = None,
        log_dir: str | os.PathLike[str],
        name: str = "api",
        port: int | None = None,
        ready_path: str = "/health",
        timeout: float = 30,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.port_given = port is not None
        self.ready_path = ready_path
        self.timeout = timeout
        self.extra_args = tuple(extra_args)
        super().__init__(name, [], env=env, log_dir=log_dir)
        self._use_port(port or free_port())

    def _use_port(self, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        uvicorn = ("-m", "uvicorn", self.app, "--host", "127.0.0.1", "--port", str(port))
        self.args = python_command(*uvicorn, *self.extra_args)

    def start(self) -> UvicornServer:
        for attempt in itertools.count(1):
            super().start()
            try:
                self.wait_for_http(f"{self.base_url}{self.ready_path}", timeout=self.timeout)
                return self
            except WaitTimeout:
                self.stop()
                # Another server took the free port first: a port of its own choosing is one more try.
                if self.port_given or attempt == 3 or "address already in use" not in self.output():
                    raise
                self._use_port(free_port())
            except BaseException:
                self.stop()
                raise


def wait_for_exit(process: ManagedProcess, timeout: float) -> int:
    """Wait for a process to end by itself and return its exit code."""
    assert process.popen is not None
    try:
        return process.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise WaitTimeout(f"{process.name} did not exit within {timeout:g}s. {process.describe()}") from None
