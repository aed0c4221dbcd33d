"""Stage 3 fixtures: a real webhook receiver that fails on purpose, and quick retries and limits
(the fixtures every Celery stage shares are in tests/celery_stage.py)."""

from __future__ import annotations

import pytest

from tests.celery_stage import (  # noqa: F401 (fixtures)
    WORKER_WITHOUT_MINGLE,
    CeleryStage,
    api_url,
    client,
    mail_server,
    queues,
    stage,
)
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
        # Well under the 1 s that a server's readiness check waits for /health, also with a stalled Redis.
        "HEALTH_TIMEOUT_SECONDS": "0.5",
        **WORKER_WITHOUT_MINGLE,
    }


@pytest.fixture(scope="session")
def stage_package() -> str:
    return "stage3_retries"


@pytest.fixture(scope="session")
def fields_of_a_finished_job() -> dict[str, object]:
    """Stage 3 counts the attempts of every job (stage 2's contract tests ask for this)."""
    return {"attempts": 1}


@pytest.fixture
def receiver(webhook_receiver: WebhookReceiver) -> WebhookReceiver:
    return webhook_receiver


@pytest.fixture
def point_webhooks_at(stage: CeleryStage, monkeypatch: pytest.MonkeyPatch):  # noqa: F811 (the fixture)
    """Point the in-process workers' WEBHOOK_URL at a URL (for example a failing path of the receiver)."""

    def point(url: str) -> None:
        monkeypatch.setattr(stage.settings, "webhook_url", url)

    return point


@pytest.fixture(scope="session")
def queue_names() -> tuple[str, ...]:
    """The stage's queues, as /health names them: one, Celery's default."""
    return ("celery",)
