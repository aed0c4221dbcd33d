"""The task functions on their own, called directly (the seed's first level of testing)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

from stage1_background_tasks.tasks import deliver_event, deliver_event_sync, send_welcome_email, write_audit_log
from tutorial.mail import SmtpSink
from tutorial.webhooks import WebhookReceiver


def test_send_welcome_email_delivers_a_real_message(configured_settings: None, smtp_sink: SmtpSink) -> None:
    send_welcome_email(3, "user3@example.com")
    (mail,) = smtp_sink.messages
    assert mail.rcpt_tos == ["user3@example.com"]
    assert mail.mail_from == "noreply@example.com"
    assert mail.subject == "Welcome!"
    assert mail.body == "Hello user 3, thank you for signing up."


def test_deliver_event_posts_the_event_as_json(configured_settings: None, webhook_receiver: WebhookReceiver) -> None:
    asyncio.run(deliver_event({"type": "user.created", "payload": {"id": 3}}))
    deliver_event_sync({"type": "user.deleted", "payload": {}})
    bodies = [request.json() for request in webhook_receiver.requests]
    assert bodies == [{"type": "user.created", "payload": {"id": 3}}, {"type": "user.deleted", "payload": {}}]
    assert webhook_receiver.requests[0].headers["Content-Type"] == "application/json"


def test_write_audit_log_appends_one_json_line_per_action(configured_settings: None, audit_log: Path) -> None:
    write_audit_log("welcome_email_sent", user_id=1)
    write_audit_log("event_delivered", event_type="user.created")
    first, second = (json.loads(line) for line in audit_log.read_text().splitlines())
    assert first["action"] == "welcome_email_sent"
    assert first["user_id"] == 1
    assert second == {"time": second["time"], "action": "event_delivered", "event_type": "user.created"}
    assert datetime.fromisoformat(first["time"]).tzinfo is not None
