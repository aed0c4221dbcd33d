"""Stage 2 fixtures: the stage on the suite's own Redis, a real API server, real workers.

The stage reads its settings once, when it is imported, like any app. So the test
process imports it only inside the `stage` fixture: by then the session's
`private_redis` fixture has started the suite's own Redis, and the stage is pointed
at it, never at a learner's localhost:6379.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.worker import WorkController

from tutorial.mail import SmtpSink
from tutorial.processes import UvicornServer
from tutorial.redis_server import RedisService

if TYPE_CHECKING:  # a real import here would read the settings too early
    from stage2_celery.config import Settings

# Stage 2 keeps its queue and its results in database 2 of the private Redis: no
# other stage's tests share these keys.
QUEUE_DB = 2
QUEUE = "celery"  # Celery's default queue: a Redis list of that name
RESULT_KEYS = "celery-task-meta-*"  # one per job: its state, its result, and the API's mark of it


def redis_url_with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


@pytest.fixture(scope="session")
def stage2_env(private_redis: RedisService) -> dict[str, str]:
    """The environment of every stage-2 process in the tests: quick tasks, the private Redis."""
    return {
        "REDIS_URL": redis_url_with_db(private_redis.url, QUEUE_DB),
        "ADD_DELAY_SECONDS": "0",
        "REPORT_STEP_SECONDS": "0.2",
    }


@dataclass
class Stage2:
    """The stage, imported in this process, for in-process workers and direct task calls."""

    celery_app: Celery
    tasks: ModuleType
    settings: Settings

    def worker(self) -> AbstractContextManager[WorkController]:
        """A real worker in a thread of this process, with the solo pool, as in Celery's own tests."""
        return start_worker(self.celery_app, pool="solo", perform_ping_check=False)


@pytest.fixture(scope="session")
def stage(stage2_env: dict[str, str]) -> Stage2:
    """The stage imported in this process, with the tests' environment (see the top of this file)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in stage2_env.items():
            patch.setenv(name, value)
        import stage2_celery
        from stage2_celery import config, tasks

    assert config.settings.redis_url == stage2_env["REDIS_URL"], (
        "stage2_celery was imported before this fixture, with another REDIS_URL: "
        "import it only inside fixtures and tests"
    )
    return Stage2(celery_app=stage2_celery.celery_app, tasks=tasks, settings=config.settings)


@pytest.fixture
def mail_server(stage: Stage2, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> SmtpSink:
    """The test's own SMTP server, for in-process workers.

    They run the stage's tasks in this process, so pointing the stage's settings at
    the server is all it takes.
    """
    monkeypatch.setattr(stage.settings, "smtp_host", smtp_sink.host)
    monkeypatch.setattr(stage.settings, "smtp_port", smtp_sink.port)
    return smtp_sink


@dataclass
class Queues:
    """The stage's Redis database: where jobs wait, and where their states and results are kept."""

    redis: redis.Redis

    def waiting(self) -> int:
        return self.redis.llen(QUEUE)

    def unacknowledged(self) -> int:
        """Jobs a worker has taken but not finished (the Redis transport keeps them in a hash)."""
        return self.redis.hlen("unacked")

    def job_keys(self) -> list[bytes]:
        return sorted(self.redis.scan_iter(RESULT_KEYS))


@pytest.fixture(autouse=True)
def queues(stage2_env: dict[str, str]) -> Iterator[Queues]:
    """Every stage-2 test ends with its queue empty; then its database is flushed."""
    with redis.Redis.from_url(stage2_env["REDIS_URL"]) as client:
        queues = Queues(client)
        yield queues
        left = {"waiting": queues.waiting(), "unacknowledged": queues.unacknowledged()}
        client.flushdb()
        assert left == {"waiting": 0, "unacknowledged": 0}, "the test left jobs behind"


@pytest.fixture(scope="session")
def api_url(stage2_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stage-2 API served by a real uvicorn process, shared by the tests: it keeps no state."""
    log_dir: Path = tmp_path_factory.mktemp("stage2-api")
    with UvicornServer("stage2_celery.main:app", env={**os.environ, **stage2_env}, log_dir=log_dir) as api:
        yield api.base_url


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client
