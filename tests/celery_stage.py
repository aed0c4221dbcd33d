"""What the tests of every Celery stage share: the stage imported with the tests' settings,
in-process workers, and the stage's Redis database, checked empty after each test.

A stage reads its settings once, when it is imported, like any app. So the test
process imports it only through `import_stage`, inside a fixture: by then the
session's `private_redis` has started the suite's own Redis and the stage is pointed
at it, never at a learner's localhost:6379.
"""

from __future__ import annotations

import gc
import importlib
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.worker import WorkController

from tutorial.mail import SmtpSink
from tutorial.processes import UvicornServer
from tutorial.waiting import wait_until

QUEUE = "celery"  # Celery's default queue: a Redis list of that name
RESULT_KEYS = "celery-task-meta-*"  # one per job: its state, its result, and the API's mark of it
# For every `celery worker` a test starts, from the environment (Celery's command line reads
# CELERY_WORKER_<OPTION>): --without-mingle. At start a worker asks the other workers for the
# jobs they revoked and waits a second for answers; no test revokes a job, and a test starts
# dozens of workers. Stage 5's Procfile says --without-mingle itself, for the same second.
WORKER_WITHOUT_MINGLE = {"CELERY_WORKER_WITHOUT_MINGLE": "1"}


@dataclass
class CeleryStage:
    """A stage imported in this process, for in-process workers and direct task calls."""

    celery_app: Celery
    tasks: ModuleType
    settings: Any

    def worker(self, **options: Any) -> AbstractContextManager[WorkController]:
        """A real worker in a thread of this process, with the solo pool (unless ``pool`` says
        otherwise), as in Celery's own tests. It asks Redis for a job every 0.1 s (see
        `import_stage`), so it stops within 0.1 s of the end of the `with`."""
        return start_worker(self.celery_app, **{"pool": "solo", "perform_ping_check": False, **options})


def import_stage(package: str, env: Mapping[str, str]) -> CeleryStage:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        stage = importlib.import_module(package)
        config = importlib.import_module(f"{package}.config")
        tasks = importlib.import_module(f"{package}.tasks")
    assert config.settings.redis_url == env["REDIS_URL"], (
        f"{package} was imported before this fixture, with another REDIS_URL: import it only inside fixtures and tests"
    )
    # A worker waits for a job with BRPOP, 1 s at a time (kombu's default), and notices that it is
    # asked to stop only between two: every test with an in-process worker would end a second late.
    # 0.1 s for the workers of this process only; the stage's own workers keep the default.
    options = stage.celery_app.conf.broker_transport_options
    stage.celery_app.conf.broker_transport_options = {**options, "polling_interval": 0.1}
    return CeleryStage(celery_app=stage.celery_app, tasks=tasks, settings=config.settings)


@dataclass
class Queues:
    """A stage's Redis database: where jobs wait, and where their states and results are kept."""

    redis: redis.Redis

    def waiting(self) -> int:
        return self.redis.llen(QUEUE)

    def unacknowledged(self) -> int:
        """Jobs a worker has taken but not finished (the Redis transport keeps them in a hash)."""
        return self.redis.hlen("unacked")

    def job_keys(self) -> list[bytes]:
        return sorted(self.redis.scan_iter(RESULT_KEYS))

    def wait_until_done(self, timeout: float = 5) -> None:
        """Until no job waits and none is taken but unacknowledged (the worker must still run)."""
        nothing_left = {"waiting": 0, "unacknowledged": 0}
        left = lambda: {"waiting": self.waiting(), "unacknowledged": self.unacknowledged()}  # noqa: E731
        wait_until(lambda: left() == nothing_left, timeout=timeout, what="the test's jobs to be done", seen=left)


@contextmanager
def checked_queues(url: str, kind: type[Queues] = Queues) -> Iterator[Queues]:
    """The stage's database for one test: it must end with no job left behind; then it is flushed."""
    with redis.Redis.from_url(url) as client:
        queues = kind(client)
        yield queues
        try:
            # With acks_late a worker acknowledges a job just after storing its result: give it a moment.
            queues.wait_until_done()
        finally:
            client.flushdb()


# Fixtures: a stage's conftest imports these and defines `stage_package` and `stage_env` ------------


@pytest.fixture(scope="session")
def stage(stage_package: str, stage_env: dict[str, str]) -> Iterator[CeleryStage]:
    """The stage imported in this process, with the tests' environment (see the top of this file)."""
    stage = import_stage(stage_package, stage_env)
    yield stage
    forget_result_subscriptions(stage.celery_app)


def forget_result_subscriptions(app: Celery) -> None:
    """Close the process's subscription to job results while the suite's Redis still answers.

    Outside a worker process, Celery's Redis result backend subscribes to the result of
    every task it sends, and a task that retries in an in-process worker sends one. Each
    result object unsubscribes when it is garbage-collected: for the last ones, when the
    test process exits, after the suite's Redis is gone, and then Celery retries for 20 s
    (measured: the flaky-webhook test took 23 s on its own instead of 3). A real worker
    process does not subscribe (its pool blocks joins), and the API unsubscribes at once.
    """
    gc.collect()  # the result objects of the in-process workers' threads: they unsubscribe now
    consumer = app.backend.result_consumer
    consumer.stop()
    consumer.subscribed_to.clear()  # nothing left that a late unsubscribe would send


@pytest.fixture
def mail_server(stage: CeleryStage, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> SmtpSink:
    """The test's own SMTP server, for in-process workers.

    They run the stage's tasks in this process, so pointing the stage's settings at
    the server is all it takes.
    """
    monkeypatch.setattr(stage.settings, "smtp_host", smtp_sink.host)
    monkeypatch.setattr(stage.settings, "smtp_port", smtp_sink.port)
    return smtp_sink


@pytest.fixture(autouse=True)
def queues(stage_env: dict[str, str]) -> Iterator[Queues]:
    """Every test of the stage ends with its queue empty; then its database is flushed."""
    with checked_queues(stage_env["REDIS_URL"]) as queues:
        yield queues


@pytest.fixture(scope="session")
def api_url(stage_package: str, stage_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stage's API served by a real uvicorn process, shared by the tests: it keeps no state."""
    log_dir = tmp_path_factory.mktemp(f"{stage_package}-api")
    with UvicornServer(f"{stage_package}.main:app", env={**os.environ, **stage_env}, log_dir=log_dir) as api:
        yield api.base_url


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client
