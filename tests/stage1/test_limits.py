"""Where BackgroundTasks stop being enough: failures, crashes, and a blocked event loop."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from starlette.background import BackgroundTask

from stage1_background_tasks.tasks import write_audit_log
from tests.conftest import RunningApi
from tests.stage1.conftest import APP
from tutorial.mail import SmtpSink
from tutorial.processes import free_port
from tutorial.webhooks import WebhookReceiver

EVENT = {"type": "report.ready", "payload": {"report_id": 1}}

# How long a health check gets to show that the server is NOT stalled. Used only where
# an answer proves the point; a stalled loop cannot answer however long we wait.
CHANCE_TO_ANSWER = 1.0


def test_a_failing_task_leaves_the_response_alone_and_the_tasks_after_it_do_not_run(
    start_api, stage1_env: dict[str, str], audit_log: Path
) -> None:
    # Nothing listens on this port, so send_welcome_email raises ConnectionRefusedError.
    api: RunningApi = start_api(APP, **{**stage1_env, "SMTP_PORT": str(free_port())})

    response = httpx.post(f"{api.base_url}/users/5/welcome", timeout=10)
    assert response.status_code == 202  # already sent: the failure cannot change it

    api.process.wait_for_output("ConnectionRefusedError")
    assert "Exception in ASGI application" in api.process.output()  # uvicorn logged the error
    # write_audit_log was queued after the e-mail in the same request: Starlette stops at the error.
    assert not audit_log.exists()
    assert httpx.get(f"{api.base_url}/health", timeout=10).status_code == 200  # the server lives on


def test_pending_work_is_lost_when_the_server_process_dies(
    stage1_api: RunningApi, smtp_sink: SmtpSink, audit_log: Path
) -> None:
    smtp_sink.hold()
    response = httpx.post(f"{stage1_api.base_url}/users/9/welcome", timeout=10)
    assert response.status_code == 202  # the client was told "accepted"...

    smtp_sink.wait_for_event("held")  # ...and the e-mail task is halfway through
    stage1_api.process.kill()  # a crash: SIGKILL, no clean-up, as in an OOM kill or a power cut
    smtp_sink.wait_for_event("disconnected")
    smtp_sink.release()

    assert smtp_sink.messages == []  # ...but the e-mail never arrives, and nothing will retry it
    assert not audit_log.exists()


def _health_check_in_background(base_url: str) -> tuple[threading.Thread, threading.Event]:
    answered = threading.Event()

    def check() -> None:
        httpx.get(f"{base_url}/health", timeout=30).raise_for_status()
        answered.set()

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    return thread, answered


def test_an_async_task_with_a_blocking_call_stalls_every_other_request(
    stage1_api: RunningApi, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.hold()
    response = httpx.post(f"{stage1_api.base_url}/events/blocking", json=EVENT, timeout=10)
    assert response.status_code == 202
    webhook_receiver.wait_for_event("held")  # the task now waits inside httpx.post, on the event loop

    thread, answered = _health_check_in_background(stage1_api.base_url)
    assert not answered.wait(CHANCE_TO_ANSWER), "/health answered although the event loop should be blocked"

    webhook_receiver.release()
    thread.join(timeout=10)
    assert answered.is_set(), "/health never answered after the blocking call returned"
    # The order of events: the webhook was answered first, only then could /health be.
    assert webhook_receiver.count("answered") == 1


def test_the_same_blocking_call_in_a_def_task_does_not_stall_the_server(
    stage1_api: RunningApi, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.hold()
    response = httpx.post(f"{stage1_api.base_url}/events/threaded", json=EVENT, timeout=10)
    assert response.status_code == 202
    webhook_receiver.wait_for_event("held")  # the task waits inside httpx.post, in a worker thread

    thread, answered = _health_check_in_background(stage1_api.base_url)
    assert answered.wait(10), "/health did not answer while a def task was blocked in a thread"
    assert webhook_receiver.count("answered") == 0  # the delivery is still held: /health came first

    webhook_receiver.release()
    thread.join(timeout=10)
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
