"""Where BackgroundTasks stop being enough: failures, crashes, and a blocked event loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from starlette.background import BackgroundTask

from stage1_background_tasks.tasks import write_audit_log
from tests.conftest import RunningApi
from tests.stage1.conftest import APP, read_audit
from tutorial.mail import SmtpSink
from tutorial.processes import UvicornServer, free_port
from tutorial.waiting import wait_until
from tutorial.webhooks import WebhookReceiver

EVENT = {"type": "report.ready", "payload": {"report_id": 1}}

# The one timed step of these tests: how long /health gets to answer while the webhook is
# held. A blocked loop cannot answer however long we wait, and a free server answers in
# milliseconds (the def-task test shows it), so its silence for this long means a stall.
CHANCE_TO_ANSWER = 0.5


def test_a_failing_task_leaves_the_response_alone_and_the_tasks_after_it_do_not_run(
    start_api: Callable[..., RunningApi], stage1_env: dict[str, str], audit_log: Path
) -> None:
    # Nothing listens on this port, so send_welcome_email raises ConnectionRefusedError.
    api = start_api(APP, **{**stage1_env, "SMTP_PORT": str(free_port())})

    response = httpx.post(f"{api.base_url}/users/5/welcome", timeout=10)
    assert response.status_code == 202  # already sent: the failure cannot change it

    api.process.wait_for_output("ConnectionRefusedError")
    assert "Exception in ASGI application" in api.process.output()  # uvicorn logged the error
    # write_audit_log was queued after the e-mail in the same request: Starlette stops at the error.
    assert not audit_log.exists()
    assert httpx.get(f"{api.base_url}/health", timeout=10).status_code == 200  # the server lives on


def test_pending_work_is_lost_when_the_server_process_dies(
    start_api: Callable[..., RunningApi],
    stage1_env: dict[str, str],
    smtp_sink: SmtpSink,
    audit_log: Path,
    tmp_path: Path,
) -> None:
    crashed = start_api(APP, **stage1_env)
    smtp_sink.hold()
    response = httpx.post(f"{crashed.base_url}/users/9/welcome", timeout=10)
    assert response.status_code == 202  # the client was told "accepted"...

    smtp_sink.wait_for_event("held")  # ...and the e-mail task is halfway through
    crashed.process.kill()  # a crash: SIGKILL, no clean-up, as in an OOM kill or a power cut
    smtp_sink.wait_for_event("disconnected")
    smtp_sink.release()

    # What a supervisor (systemd, Kubernetes, Docker's restart policy) does next: the same
    # server again, same app, same settings, same port.
    with UvicornServer(
        crashed.process.app,
        env=crashed.process.env,
        port=crashed.process.port,
        log_dir=tmp_path,
        name="api-restarted",
    ) as restarted:
        # The new server is up and does its work: a whole request, e-mail and audit line included.
        assert httpx.post(f"{restarted.base_url}/users/10/welcome", timeout=10).status_code == 202
        smtp_sink.wait_for_messages(1)
        lines = wait_until(lambda: read_audit(audit_log), timeout=10, what="the audit line for user 10")

    # ...but user 9's e-mail never arrives: it lived only in the memory of the killed process.
    assert [mail.rcpt_tos for mail in smtp_sink.messages] == [["user10@example.com"]]
    assert [(line["action"], line["user_id"]) for line in lines] == [("welcome_email_sent", 10)]


class HealthCheck:
    """GET /health from a thread, noting its answer in a timeline the test also writes to."""

    def __init__(self, base_url: str, timeline: list[str]) -> None:
        self.answered = threading.Event()
        self._thread = threading.Thread(target=self._check, args=(base_url, timeline), daemon=True)
        self._thread.start()

    def _check(self, base_url: str, timeline: list[str]) -> None:
        httpx.get(f"{base_url}/health", timeout=30).raise_for_status()
        timeline.append("/health answered")
        self.answered.set()

    def join(self) -> None:
        self._thread.join(timeout=10)


def test_an_async_task_with_a_blocking_call_stalls_every_other_request(
    stage1_api: RunningApi, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.hold()
    response = httpx.post(f"{stage1_api.base_url}/events/blocking", json=EVENT, timeout=10)
    assert response.status_code == 202
    webhook_receiver.wait_for_event("held")  # the task now waits inside httpx.post, on the event loop

    timeline: list[str] = []
    health = HealthCheck(stage1_api.base_url, timeline)
    assert not health.answered.wait(CHANCE_TO_ANSWER), "/health answered although the event loop should be blocked"

    # The order to show: the receiver lets the webhook call return, only then can /health answer.
    # (Its "answered" event cannot mark that moment: it is noted just after the answer is
    # written, so it may trail /health's answer.)
    timeline.append("webhook released")
    webhook_receiver.release()
    health.join()
    assert timeline == ["webhook released", "/health answered"], "/health never answered after the webhook call"
    webhook_receiver.wait_for_event("answered")
    assert webhook_receiver.events == ["arrived", "held", "answered"]  # one delivery, held until released


def test_the_same_blocking_call_in_a_def_task_does_not_stall_the_server(
    stage1_api: RunningApi, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.hold()
    response = httpx.post(f"{stage1_api.base_url}/events/threaded", json=EVENT, timeout=10)
    assert response.status_code == 202
    webhook_receiver.wait_for_event("held")  # the task waits inside httpx.post, in a worker thread

    timeline: list[str] = []
    health = HealthCheck(stage1_api.base_url, timeline)
    assert health.answered.wait(10), "/health did not answer while a def task was blocked in a thread"

    timeline.append("webhook released")
    webhook_receiver.release()
    health.join()
    assert timeline == ["/health answered", "webhook released"]  # /health did not wait for the delivery
    webhook_receiver.wait_for_event("answered")


def test_a_response_with_its_own_background_task_drops_the_injected_ones(
    configured_settings: None, audit_log: Path
) -> None:
    # The trap from the README, on the stage's own task: FastAPI keeps the response's
    # `background=` and silently ignores what was added to the BackgroundTasks parameter.
    app = FastAPI()

    @app.post("/both")
    def both(background_tasks: BackgroundTasks) -> JSONResponse:
        background_tasks.add_task(write_audit_log, "injected")
        return JSONResponse({"ok": True}, background=BackgroundTask(write_audit_log, "from_response"))

    with TestClient(app) as client:  # it runs background tasks before returning
        assert client.post("/both").status_code == 200
    actions = [line.split('"action": "')[1].split('"')[0] for line in audit_log.read_text().splitlines()]
    assert actions == ["from_response"]
