"""Stage 1 fixtures: the app wired to the test's own mail catcher and webhook receiver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import RunningApi
from tutorial.mail import SmtpSink
from tutorial.webhooks import WebhookReceiver

APP = "stage1_background_tasks.main:app"


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


@pytest.fixture
def stage1_env(smtp_sink: SmtpSink, webhook_receiver: WebhookReceiver, audit_log: Path) -> dict[str, str]:
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_sink.port),
        "WEBHOOK_URL": webhook_receiver.url,
        "AUDIT_LOG_PATH": str(audit_log),
    }


@pytest.fixture
def stage1_api(start_api: Callable[..., RunningApi], stage1_env: dict[str, str]) -> RunningApi:
    """The stage-1 app served by a real uvicorn process."""
    return start_api(APP, **stage1_env)


@pytest.fixture
def configured_settings(monkeypatch: pytest.MonkeyPatch, stage1_env: dict[str, str]) -> None:
    """Point the in-process settings object at the test's services."""
    from stage1_background_tasks.config import settings

    for name, value in stage1_env.items():
        monkeypatch.setattr(settings, name.lower(), type(getattr(settings, name.lower()))(value))


@pytest.fixture
def client(configured_settings: None) -> Iterator[TestClient]:
    from stage1_background_tasks.main import app

    with TestClient(app) as test_client:
        yield test_client
