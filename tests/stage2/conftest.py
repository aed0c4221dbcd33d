"""Stage 2 fixtures: the stage on the suite's own Redis, a real API server, real workers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.celery_stage import CeleryStage, Queues, checked_queues, import_stage
from tutorial.mail import SmtpSink
from tutorial.processes import UvicornServer
from tutorial.redis_server import RedisService, with_database

# Stage 2 keeps its queue and its results in database 2 of the private Redis: no
# other stage's tests share these keys.
QUEUE_DB = 2


@pytest.fixture(scope="session")
def stage_env(private_redis: RedisService) -> dict[str, str]:
    """The environment of every stage-2 process in the tests: quick tasks, the private Redis."""
    return {
        "REDIS_URL": with_database(private_redis.url, QUEUE_DB),
        "ADD_DELAY_SECONDS": "0",
        "REPORT_STEP_SECONDS": "0.2",
    }


@pytest.fixture(scope="session")
def stage_package() -> str:
    """The stage's package (tests shared with later stages ask for it by this name)."""
    return "stage2_celery"


@pytest.fixture(scope="session")
def stage(stage_package: str, stage_env: dict[str, str]) -> CeleryStage:
    """The stage imported in this process, with the tests' environment (see tests/celery_stage.py)."""
    return import_stage(stage_package, stage_env)


@pytest.fixture(scope="session")
def fields_of_a_finished_job() -> dict[str, object]:
    """What this stage's job status adds, beyond stage 2's fields, once a job has run once."""
    return {}


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
    """Every stage-2 test ends with its queue empty; then its database is flushed."""
    with checked_queues(stage_env["REDIS_URL"]) as queues:
        yield queues


@pytest.fixture(scope="session")
def api_url(stage_package: str, stage_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stage-2 API served by a real uvicorn process, shared by the tests: it keeps no state."""
    log_dir: Path = tmp_path_factory.mktemp("stage2-api")
    with UvicornServer(f"{stage_package}.main:app", env={**os.environ, **stage_env}, log_dir=log_dir) as api:
        yield api.base_url


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client
