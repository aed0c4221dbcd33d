"""The work itself, in plain Python: no Celery here. tasks.py wraps each piece in a Celery task
(retries, time limits, progress); stage 4 wraps the same work for RQ and Dramatiq too."""

import random
import smtplib
import time
from email.message import EmailMessage
from typing import Any

import httpx

# Part of the stage5_monitoring package; in a flat project: from config import settings
from .config import settings

# What a retry cannot fix is not retried: a 400 stays a 400. These may pass: a timeout, too
# many requests, and every 5xx (the receiver's own trouble).
RETRYABLE_STATUS = {408, 429, *range(500, 600)}
# Not reaching the mail server, or losing it halfway, is worth another try; a refused address is not.
SMTP_CONNECTION_ERRORS = (ConnectionError, TimeoutError, smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected)


class WebhookFailed(Exception):
    """The receiver answered with an error status."""

    def __init__(self, message: str, status_code: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after  # the receiver's own Retry-After, capped

    @property
    def retryable(self) -> bool:
        return self.status_code in RETRYABLE_STATUS


class ReportTimedOut(Exception):
    """The report hit its soft time limit and stopped cleanly."""


def backoff_seconds(retries: int) -> float:
    """Exponential backoff with full jitter: a random wait in [0, min(max, base * 2**retries)].

    The randomness spreads the retries of many failed jobs, so a receiver that comes
    back is not hit by all of them in the same second (a retry storm).
    """
    return random.uniform(0, min(settings.retry_backoff_cap_seconds, settings.retry_backoff_seconds * 2**retries))


def welcome_email(user_id: int, to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = to
    message["Subject"] = "Welcome!"
    message.set_content(f"Hello user {user_id}, thank you for signing up.")
    return message


def send_email(message: EmailMessage) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        smtp.send_message(message)


def post_event(event: dict[str, Any], idempotency_key: str) -> dict[str, int]:
    """POST the event to WEBHOOK_URL with the job's Idempotency-Key; WebhookFailed on an error status.

    Every attempt of one job carries the same key, so a receiver that got an attempt
    whose answer was lost can recognise the next one and not act twice.
    """
    headers = {"Idempotency-Key": idempotency_key}
    timeout = settings.webhook_timeout_seconds
    response = httpx.post(settings.webhook_url, json=event, headers=headers, timeout=timeout)
    if response.is_success:
        return {"status_code": response.status_code}
    raise WebhookFailed(
        f"{settings.webhook_url} answered {response.status_code} {response.reason_phrase}",
        response.status_code,
        retry_after(response),
    )


def retry_after(response: httpx.Response) -> float | None:
    """The receiver's own Retry-After (seconds) on a 429 or 503, capped at the backoff maximum."""
    value = response.headers.get("Retry-After", "")
    if response.status_code in (429, 503) and value.isdigit():
        return min(float(value), settings.retry_backoff_cap_seconds)
    return None


def add_slowly(x: int, y: int) -> int:
    """The seed's long_add: slow on purpose (ADD_DELAY_SECONDS), so you can watch its status."""
    time.sleep(settings.add_delay_seconds)
    return x + y


def process_row(row: float) -> None:
    """Stands in for the real work on one row: slow on purpose (REPORT_STEP_SECONDS)."""
    time.sleep(settings.report_step_seconds)


def summary(rows: list[float]) -> dict[str, float]:
    return {"rows": len(rows), "sum": sum(rows), "mean": sum(rows) / len(rows), "min": min(rows), "max": max(rows)}
