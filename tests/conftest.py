"""Fixtures shared by every test: private local services, always stopped afterwards."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tutorial.environment import MAKE_VARIABLES, REDIS_ELSEWHERE, changed_environment
from tutorial.mail import SmtpSink
from tutorial.processes import UvicornServer
from tutorial.redis_server import RedisService, start_redis_server
from tutorial.webhooks import WebhookReceiver

# After a run that ran READMEs, what each one ran and exempted (the file says why it is a plugin).
pytest_plugins = ["tests.docs.readme_summary"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order_long_first(items, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))  # set in every test process by xdist


def order_long_first(items: list[pytest.Item], shares: int) -> None:
    """Put the tests marked `long` first in the share of each test process, one process after another.

    pytest-xdist hands each test process a contiguous share of the collected tests, and a
    process that runs out takes over the back half of another's share (worksteal). The long
    ones (a whole README, a demo chapter: 10 to 50 s each) sit next to each other in their
    modules, so one process would get them all and end a minute after the others. At the
    front of every share they start together, and the short tests behind them are taken
    over by whichever process is free. Exactly at the front: a long test a few tests before
    it ends its share instead, where it starts last or is taken over late. A module that the
    long tests cut there is one whose share begins in its middle: its two parts run in two
    processes anyway (a cut inside a share would set up its module fixtures twice).

    Right behind them, each module marked `together` (its tests share processes that it
    starts once), whole: nobody takes over the front of a share, and a process that took
    over part of such a module would start its processes once more.
    """
    long_ones: dict[object, list[pytest.Item]] = {}
    together: dict[object, list[pytest.Item]] = {}
    for item in items:
        if item.get_closest_marker("long"):
            long_ones.setdefault(item.module, []).append(item)
        elif item.get_closest_marker("together"):
            together.setdefault(item.module, []).append(item)
    # One module's after another's in turn: two long tests of one module are not neighbours.
    long = [item for group in itertools.zip_longest(*long_ones.values()) for item in group if item is not None]
    fronts = [long[share::shares] for share in range(shares)]
    for number, module in enumerate(together.values()):
        fronts[-1 - number % shares] += module  # the last shares have the fewest long tests
    moved = {id(item) for front in fronts for item in front}
    if not moved or len(moved) == len(items):
        return
    rest = [item for item in items if id(item) not in moved]
    before: dict[int, list[pytest.Item]] = {}
    placed = 0
    for front, start in zip(fronts, first_share_starts(len(items), shares), strict=True):
        # Where xdist will start this share, counted in the tests not moved.
        before.setdefault(min(start - placed, len(rest)), []).extend(front)
        placed += len(front)
    ordered = []
    for index, item in enumerate(rest):
        ordered += [*before.pop(index, ()), item]
    items[:] = [*ordered, *before.pop(len(rest), ())]


def first_share_starts(count: int, shares: int) -> list[int]:
    """Where each test process's first share begins: xdist's worksteal gives each idle process in
    turn the tests not yet given divided by the processes left (WorkStealingScheduling.check_schedule)."""
    starts = [0]
    for share in range(shares - 1):
        starts.append(starts[-1] + (count - starts[-1]) // (shares - share))
    return starts


@pytest.fixture(scope="session", autouse=True)
def private_redis() -> Iterator[RedisService]:
    """A redis-server of the suite's own on a free port, never a learner's.

    REDIS_URL points at it for the whole session, so code that falls back to
    localhost:6379 cannot reach a learner's data by accident. CELERY_BROKER_URL,
    CELERY_RESULT_BACKEND and RESULT_BACKEND_URL are unset: a learner's exported ones
    would send jobs or results elsewhere (Celery even takes its two over the URLs it is given).
    So are make's own variables: a make that a test starts must not take `make test`'s VENV.
    """
    with (
        start_redis_server() as service,
        changed_environment({"REDIS_URL": service.url, **dict.fromkeys(REDIS_ELSEWHERE + MAKE_VARIABLES)}),
    ):
        yield service


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def start_api(tmp_path: Path) -> Iterator[Callable[..., RunningApi]]:
    """Start a real uvicorn server for a stage's app; every one is stopped at the end.

    Usage: ``api = start_api("stage1_background_tasks.main:app", SMTP_PORT="8025")``.
    """
    started: list[UvicornServer] = []

    def start(app: str, **env: str) -> RunningApi:
        server = UvicornServer(app, env={**os.environ, **env}, log_dir=tmp_path, name=f"api-{len(started)}")
        started.append(server)
        server.start()
        return RunningApi(server, server.base_url)

    yield start
    for server in started:
        server.stop()


@dataclass
class RunningApi:
    process: UvicornServer
    base_url: str
