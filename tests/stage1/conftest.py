"""Stage 1 fixtures: the app wired to a mail catcher, a webhook receiver and an audit log of the tests.

Starting a uvicorn costs about a second and stopping a webhook receiver half a second,
so each test process (each pytest-xdist worker) keeps one set of them for its stage-1
tests: a mail catcher, a webhook receiver, an audit log path and, for the tests that
only send requests, one stage-1 server. After a test has passed, once its work is
done, what they received is forgotten, so the next test starts from empty records.
After a test has failed, the whole set is thrown away and a new one made: whatever
the failed test left in flight cannot reach the next one. Tests that change a setting
or kill the server start their own server, pointed at the same set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import RunningApi
from tutorial.mail import SmtpSink
from tutorial.processes import UvicornServer
from tutorial.waiting import wait_until
from tutorial.webhooks import WebhookReceiver

APP = "stage1_background_tasks.main:app"

TEST_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[TEST_FAILED] = True
    return report


def read_audit(path: Path) -> list[dict]:
    """The audit log's JSON lines; none when the file was never written."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wait_until_idle(recorder: SmtpSink | WebhookReceiver, busy: Callable[[], bool]) -> None:
    wait_until(
        lambda: not busy(),
        timeout=10,
        what=f"{recorder.description} to finish the test's work",
        seen=lambda: list(recorder.events),
    )


class Stage1Services:
    """A mail catcher, a webhook receiver, an audit log path and, when asked for, a stage-1 server."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.audit_log = work_dir / "audit.log"
        self.smtp_sink = SmtpSink().start()
        self.webhook_receiver = WebhookReceiver().start()
        self._server: UvicornServer | None = None

    def env(self) -> dict[str, str]:
        """The settings that point the app at these services."""
        return {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp_sink.port),
            "WEBHOOK_URL": self.webhook_receiver.url,
            # Longer than any wait of the tests: the app never gives up on a webhook a test holds.
            "WEBHOOK_TIMEOUT_SECONDS": "30",
            "AUDIT_LOG_PATH": str(self.audit_log),
        }

    def api(self) -> RunningApi:
        """The shared server, started on first use (and again if a test has stopped it)."""
        if self._server is None or not self._server.is_running():
            self._server = UvicornServer(
                APP, env={**os.environ, **self.env()}, log_dir=self.work_dir, name="shared-api"
            ).start()
        return RunningApi(self._server, self._server.base_url)

    def forget_the_test(self) -> None:
        """Let held work go on, wait until none is in flight, then forget what was received."""
        sink, receiver = self.smtp_sink, self.webhook_receiver
        sink.release()
        receiver.release()
        _wait_until_idle(sink, lambda: sink.count("connected") != sink.count("disconnected"))
        _wait_until_idle(receiver, lambda: receiver.count("arrived") != receiver.count("answered"))
        for recorder in (sink, receiver):
            recorder.received.clear()
            recorder.events.clear()
        self.audit_log.unlink(missing_ok=True)

    def close(self) -> None:
        if self._server is not None:
            self._server.kill()  # a kill, not a stop: what it still had to do is of no interest
        self.smtp_sink.stop()
        self.webhook_receiver.stop()


class Stage1Session:
    """The current set of services of this test process; renewed after a failed test."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp_path_factory = tmp_path_factory
        self.services = self._new()

    def _new(self) -> Stage1Services:
        return Stage1Services(self._tmp_path_factory.mktemp("stage1"))

    def renew(self) -> None:
        self.services.close()
        self.services = self._new()


@pytest.fixture(scope="session")
def stage1_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage1Session]:
    session = Stage1Session(tmp_path_factory)
    yield session
    session.services.close()


@pytest.fixture
def stage1_services(request: pytest.FixtureRequest, stage1_session: Stage1Session) -> Iterator[Stage1Services]:
    yield stage1_session.services
    if request.node.stash.get(TEST_FAILED, False):
        stage1_session.renew()
        return
    try:
        stage1_session.services.forget_the_test()
    except BaseException:
        stage1_session.renew()
        raise


# These replace the per-test smtp_sink and webhook_receiver of tests/conftest.py for stage 1.
@pytest.fixture
def smtp_sink(stage1_services: Stage1Services) -> SmtpSink:
    return stage1_services.smtp_sink


@pytest.fixture
def webhook_receiver(stage1_services: Stage1Services) -> WebhookReceiver:
    return stage1_services.webhook_receiver


@pytest.fixture
def audit_log(stage1_services: Stage1Services) -> Path:
    return stage1_services.audit_log


@pytest.fixture
def stage1_env(stage1_services: Stage1Services) -> dict[str, str]:
    return stage1_services.env()


@pytest.fixture
def stage1_api(stage1_services: Stage1Services) -> RunningApi:
    """The stage-1 app served by a real uvicorn process, shared by the tests that only send it requests."""
    return stage1_services.api()


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
