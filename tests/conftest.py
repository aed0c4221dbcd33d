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
    """Put the tests marked `long` first in the share of each test process, one process after another.

    pytest-xdist hands each test process a contiguous share of the collected tests, and a
    process that runs out takes over the back half of another's share (worksteal). The long
    ones (a whole README, a demo chapter: 10 to 50 s each) sit next to each other in their
    modules, so one process would get them all and end a minute after the others. At the
    front of every share they start together, and the short tests behind them are taken
    over by whichever process is free. Only between modules: a long test inside another
    module would make it set up its module fixtures twice.
    """
    by_module: dict[object, list[pytest.Item]] = {}
    for item in items:
        if item.get_closest_marker("long"):
            by_module.setdefault(item.module, []).append(item)
    # One module's after another's in turn: two long tests of one module are not neighbours.
    long = [item for group in itertools.zip_longest(*by_module.values()) for item in group if item is not None]
    if not long or len(long) == len(items):
        return
    shares = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # set in every test process by xdist
    rest = [item for item in items if not item.get_closest_marker("long")]
    boundaries = [0, *(index for index in range(1, len(rest)) if rest[index].module is not rest[index - 1].module)]
    before: dict[int, list[pytest.Item]] = {}
    for share in range(shares):
        its_long = long[share::shares]
        placed_before = sum(len(long[earlier::shares]) for earlier in range(share))
        # Where xdist will start this share, counted in the short tests.
        ideal = len(items) * share / shares - placed_before
        before.setdefault(min(boundaries, key=lambda index: abs(index - ideal)), []).extend(its_long)
    items[:] = [moved for index, item in enumerate(rest) for moved in (*before.pop(index, ()), item)]


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
