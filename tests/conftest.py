"""Fixtures shared by every test: private local services, always stopped afterwards."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tutorial.environment import changed_environment
from tutorial.mail import SmtpSink
from tutorial.processes import UvicornServer
from tutorial.redis_server import RedisService, start_redis_server
from tutorial.webhooks import WebhookReceiver

CELERY_OVERRIDES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


@pytest.fixture(scope="session", autouse=True)
def private_redis() -> Iterator[RedisService]:
    """A redis-server of the suite's own on a free port, never a learner's.

    REDIS_URL points at it for the whole session, so code that falls back to
    localhost:6379 cannot reach a learner's data by accident. CELERY_BROKER_URL and
    CELERY_RESULT_BACKEND are unset: Celery reads them in place of the broker and
    backend it is given, so a learner's exported ones would win over REDIS_URL.
    """
    with (
        start_redis_server() as service,
        changed_environment({"REDIS_URL": service.url, **dict.fromkeys(CELERY_OVERRIDES)}),
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
