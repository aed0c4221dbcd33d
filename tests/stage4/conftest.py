"""Stage 4 fixtures: the API on the suite's own Redis, and a worker per library started from the
stage's Procfile, as a learner starts them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.celery_stage import WORKER_WITHOUT_MINGLE
from tests.procfile import procfile_starter
from tutorial.mail import SmtpSink
from tutorial.processes import ManagedProcess, UvicornServer
from tutorial.redis_server import RedisService, with_database
from tutorial.webhooks import WebhookReceiver

STAGE = "stage4_rq_dramatiq"
LIBRARIES = ["celery", "rq", "dramatiq"]
QUEUE_DB = 4
MAX_RETRIES = 2  # of every retried task in the tests: 3 attempts in all
# What each library's worker prints when it is ready to take jobs.
READY = {"celery": " ready.", "rq": "Listening on default", "dramatiq": "Worker process is ready for action."}


@pytest.fixture(scope="session")
def services() -> Iterator[tuple[SmtpSink, WebhookReceiver]]:
    """One mail catcher and one webhook receiver for the stage's workers (reset before each test)."""
    with SmtpSink() as mail, WebhookReceiver() as hooks:
        yield mail, hooks


@pytest.fixture(scope="session")
def stage_env(private_redis: RedisService, services, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of every stage-4 process in the tests: quick tasks and retries, the private Redis."""
    mail, hooks = services
    return {
        "REDIS_URL": with_database(private_redis.url, QUEUE_DB),
        "SMTP_HOST": mail.host,
        "SMTP_PORT": str(mail.port),
        "WEBHOOK_URL": hooks.url,
        "ADD_DELAY_SECONDS": "0",
        "REPORT_STEP_SECONDS": "0.3",
        "WEBHOOK_MAX_RETRIES": str(MAX_RETRIES),
        "EMAIL_MAX_RETRIES": str(MAX_RETRIES),
        "RETRY_BACKOFF_SECONDS": "0.05",
        "RETRY_BACKOFF_MAX_SECONDS": "1",
        "UPLOAD_DIR": str(tmp_path_factory.mktemp("uploads")),
        # Well under the 1 s that a server's readiness check waits for /health, also with a stalled Redis.
        "HEALTH_TIMEOUT_SECONDS": "0.5",
        **WORKER_WITHOUT_MINGLE,
    }


@pytest.fixture(scope="session")
def api_url(stage_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with UvicornServer(
        f"{STAGE}.main:app", env={**os.environ, **stage_env}, log_dir=tmp_path_factory.mktemp("api")
    ) as api:
        yield api.base_url


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client


@pytest.fixture
def mail(services) -> SmtpSink:
    mail, _ = services
    mail.clear()
    return mail


@pytest.fixture
def receiver(services) -> Iterator[WebhookReceiver]:
    _, hooks = services
    hooks.heal()
    hooks.clear()
    yield hooks
    hooks.heal()


@pytest.fixture
def start_worker(stage_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """Start a library's worker from the Procfile and wait until it is ready (unless wait=False); all
    are stopped together at the end."""
    with procfile_starter(STAGE, stage_env, tmp_path) as start:
        yield lambda library, wait=True, **env: start(library, READY[library] if wait else None, **env)
