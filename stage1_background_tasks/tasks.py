"""The work that runs after the response: plain functions, testable on their own."""

import json
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx

# Part of the stage1_background_tasks package; in a flat project: from config import settings
from .config import settings


def send_welcome_email(user_id: int, to: str) -> None:
    """Send the welcome e-mail over SMTP.

    A plain `def`: Starlette runs it in a worker thread, so the blocking SMTP
    conversation does not hold up other requests.
    """
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = to
    message["Subject"] = "Welcome!"
    message.set_content(f"Hello user {user_id}, thank you for signing up.")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        smtp.send_message(message)


async def deliver_event(event: dict[str, Any]) -> None:
    """POST the event to WEBHOOK_URL without blocking the event loop.

    An `async def` task runs on the server's event loop, so every call in it must
    be awaitable: httpx.AsyncClient is, and the timeout keeps a dead receiver
    from holding the task forever.
    """
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_seconds) as client:
        response = await client.post(settings.webhook_url, json=event)
        response.raise_for_status()


def deliver_event_sync(event: dict[str, Any]) -> None:
    """The same delivery with the blocking client: fine as a `def` task (a worker thread)."""
    response = httpx.post(settings.webhook_url, json=event, timeout=settings.webhook_timeout_seconds)
    response.raise_for_status()


async def deliver_event_blocking_the_loop(event: dict[str, Any]) -> None:
    """The trap: an `async def` task that calls a blocking function.

    It runs on the event loop, and while httpx.post waits for the receiver the loop
    can do nothing else: every other request of this server waits too.
    """
    deliver_event_sync(event)


def write_audit_log(action: str, **details: Any) -> None:
    """Append one JSON line per action to AUDIT_LOG_PATH."""
    record = {"time": datetime.now(UTC).isoformat(), "action": action, **details}
    with open(settings.audit_log_path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
