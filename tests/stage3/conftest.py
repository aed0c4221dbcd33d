"""Stage 3 fixtures: the stage on the suite's own Redis, a real API server, real workers,
a real mail catcher and a real webhook receiver that fails on purpose."""

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
from tutorial.webhooks import WebhookReceiver

# Stage 3 keeps its queue, results and dead letters in database 3 of the private Redis.
QUEUE_DB = 3
MAX_RETRIES = 2  # of every retried task in the tests: 3 attempts in all


@pytest.fixture(scope="session")
def stage_env(private_redis: RedisService) -> dict[str, str]:
    """The environment of every stage-3 process in the tests: quick tasks and retries, the private Redis."""
    return {
        "REDIS_URL": with_database(private_redis.url, QUEUE_DB),
        "ADD_DELAY_SECONDS": "0",
        "REPORT_STEP_SECONDS": "0.2",
        "WEBHOOK_MAX_RETRIES": str(MAX_RETRIES),
        "EMAIL_MAX_RETRIES": str(MAX_RETRIES),
        "RETRY_BACKOFF_SECONDS": "0.05",
        "RETRY_BACKOFF_MAX_SECONDS": "5",
        # Short limits, so the prefork worker shows them quickly (and solo shows it ignores them).
        "REPORT_SOFT_TIME_LIMIT_SECONDS": "1",
        "REPORT_TIME_LIMIT_SECONDS": "2",
    }


@pytest.fixture(scope="session")
def stage_package() -> str:
    return "stage3_retries"


@pytest.fixture(scope="session")
def stage(stage_package: str, stage_env: dict[str, str]) -> CeleryStage:
    """The stage imported in this process, with the tests' environment (see tests/celery_stage.py)."""
    return import_stage(stage_package, stage_env)


@pytest.fixture(scope="session")
def fields_of_a_finished_job() -> dict[str, object]:
    """Stage 3 counts the attempts of every job (stage 2's contract tests ask for this)."""
    return {"attempts": 1}


@pytest.fixture
def mail_server(stage: CeleryStage, smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> SmtpSink:
    """The test's own SMTP server, for in-process workers (they read the stage's settings object)."""
    monkeypatch.setattr(stage.settings, "smtp_host", smtp_sink.host)
    monkeypatch.setattr(stage.settings, "smtp_port", smtp_sink.port)
    return smtp_sink


@pytest.fixture
def receiver(webhook_receiver: WebhookReceiver) -> WebhookReceiver:
    return webhook_receiver


@pytest.fixture
def point_webhooks_at(stage: CeleryStage, monkeypatch: pytest.MonkeyPatch):
    """Point the in-process workers' WEBHOOK_URL at a URL (for example a failing path of the receiver)."""

    def point(url: str) -> None:
        monkeypatch.setattr(stage.settings, "webhook_url", url)

    return point


@pytest.fixture(autouse=True)
def queues(stage_env: dict[str, str]) -> Iterator[Queues]:
    """Every stage-3 test ends with its queue empty; then its database (dead letters too) is flushed."""
    with checked_queues(stage_env["REDIS_URL"]) as queues:
        yield queues


@pytest.fixture(scope="session")
def api_url(stage_package: str, stage_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stage-3 API served by a real uvicorn process, shared by the tests: it keeps no state."""
    log_dir: Path = tmp_path_factory.mktemp("stage3-api")
    with UvicornServer(f"{stage_package}.main:app", env={**os.environ, **stage_env}, log_dir=log_dir) as api:
        yield api.base_url


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client
