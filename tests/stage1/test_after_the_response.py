"""The lesson of stage 1: the response goes first, the work follows in the same process."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from tests.conftest import RunningApi
from tests.stage1.conftest import read_audit
from tutorial.mail import SmtpSink
from tutorial.waiting import wait_until
from tutorial.webhooks import WebhookReceiver


def test_the_response_arrives_before_the_email_and_the_webhook(
    stage1_api: RunningApi, smtp_sink: SmtpSink, webhook_receiver: WebhookReceiver, audit_log: Path
) -> None:
    # Both receivers keep the tasks waiting until the test releases them.
    smtp_sink.hold()
    webhook_receiver.hold()

    welcome = httpx.post(f"{stage1_api.base_url}/users/42/welcome", timeout=10)
    assert welcome.status_code == 202
    assert welcome.json()["detail"] == "a welcome e-mail to user42@example.com will be sent"
    smtp_sink.wait_for_event("held")
    assert smtp_sink.messages == [], "the response came back while the e-mail task was still sending"

    event = httpx.post(
        f"{stage1_api.base_url}/events", json={"type": "user.created", "payload": {"id": 42}}, timeout=10
    )
    assert event.status_code == 202
    webhook_receiver.wait_for_event("held")
    assert webhook_receiver.count("answered") == 0, "the response came back while the webhook was in flight"

    smtp_sink.release()
    webhook_receiver.release()

    (mail,) = smtp_sink.wait_for_messages(1)
    assert mail.rcpt_tos == ["user42@example.com"]
    assert mail.subject == "Welcome!"
    assert "Hello user 42" in mail.body
    (request,) = webhook_receiver.wait_for_requests(1)
    assert request.path == "/webhook"
    assert request.json() == {"type": "user.created", "payload": {"id": 42}}

    lines = wait_until(
        lambda: len(read_audit(audit_log)) == 2 and read_audit(audit_log), timeout=10, what="2 audit lines"
    )
    # Two requests, released together: their audit lines may come in either order.
    actions = {(line["action"], line.get("user_id"), line.get("event_type")) for line in lines}
    assert actions == {("welcome_email_sent", 42, None), ("event_delivered", None, "user.created")}


def test_the_test_client_runs_background_tasks_before_it_returns(client: TestClient, smtp_sink: SmtpSink) -> None:
    # TestClient waits for the whole ASGI call, background tasks included: it hides the
    # "after the response" ordering, which is why the test above uses a real server.
    response = client.post("/users/7/welcome")
    assert response.status_code == 202
    assert [mail.rcpt_tos for mail in smtp_sink.messages] == [["user7@example.com"]]


def test_a_non_positive_user_id_is_refused_and_nothing_is_scheduled(
    client: TestClient, smtp_sink: SmtpSink, audit_log: Path
) -> None:
    for user_id in ("0", "-3", "abc"):
        response = client.post(f"/users/{user_id}/welcome")
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["path", "user_id"]
    # TestClient would have run any scheduled task before returning (see the test above).
    assert smtp_sink.events == []
    assert read_audit(audit_log) == []


def test_a_malformed_event_is_refused_naming_the_field_and_nothing_is_delivered(
    client: TestClient, webhook_receiver: WebhookReceiver, audit_log: Path
) -> None:
    cases = [
        ({"payload": {}}, ["body", "type"]),
        ({"type": "User Created"}, ["body", "type"]),
        ({"type": "user.created", "payload": "not an object"}, ["body", "payload"]),
    ]
    for body, field in cases:
        response = client.post("/events", json=body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == field
    not_json = client.post("/events", content=b"{oops", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422
    assert webhook_receiver.events == []
    assert read_audit(audit_log) == []
