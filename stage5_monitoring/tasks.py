"""The work, as Celery tasks that survive failure: retried with backoff, safe to run twice."""

import random
import smtplib
import time
from email.message import EmailMessage
from typing import Any

import httpx
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_prerun

# Part of the stage5_monitoring package; in a flat project: from celery_app import celery_app
from . import thumbnails
from .celery_app import celery_app
from .config import settings
from .dead_letters import count_dead_letters, list_dead_letters

# What a retry cannot fix is not retried: a 400 stays a 400. These may pass: a timeout, too
# many requests, and every 5xx (the receiver's own trouble).
RETRYABLE_STATUS = {408, 429, *range(500, 600)}
# Not reaching the mail server, or losing it halfway, is worth another try; a refused address is not.
SMTP_CONNECTION_ERRORS = (ConnectionError, TimeoutError, smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected)


class WebhookFailed(Exception):
    """The receiver answered with an error status."""


class ReportTimedOut(Exception):
    """The report hit its soft time limit and stopped cleanly."""


def backoff_seconds(retries: int) -> float:
    """Exponential backoff with full jitter: a random wait in [0, min(max, base * 2**retries)].

    The randomness spreads the retries of many failed jobs, so a receiver that comes
    back is not hit by all of them in the same second (a retry storm).
    """
    return random.uniform(0, min(settings.retry_backoff_cap_seconds, settings.retry_backoff_seconds * 2**retries))


def attempts_key(job_id: str) -> str:
    return f"job-attempts:{job_id}"


@task_prerun.connect
def count_attempt(task_id: str, task: Task, **_: Any) -> None:
    """Count every time a worker starts a job: retries and redeliveries after a crash alike."""
    if task.app is not celery_app:
        return  # a job of another Celery app in this process (the tests load several)
    with celery_app.backend.client.pipeline() as pipe:
        attempt, _ = (
            pipe.incr(attempts_key(task_id)).expire(attempts_key(task_id), settings.result_expires_seconds).execute()
        )
    task.request.attempt = attempt  # for the job's log lines (see logs.py)


@celery_app.task(bind=True, max_retries=settings.email_max_retries)
def send_welcome_email(self: Task, user_id: int, to: str) -> None:
    """Send the welcome e-mail over SMTP, once per job, however often the job is delivered.

    acks_late means a job can run twice (its worker died after sending, before the
    acknowledgement), so the task remembers, per job id, that the e-mail went out. The
    window that remains: a crash between the mail server's "OK" and that note.
    """
    sent = f"welcome-email-sent:{self.request.id}"
    if celery_app.backend.client.exists(sent):
        return  # a redelivery of a job whose e-mail went out already
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = to
    message["Subject"] = "Welcome!"
    message.set_content(f"Hello user {user_id}, thank you for signing up.")
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
            smtp.send_message(message)
    except SMTP_CONNECTION_ERRORS as error:
        raise self.retry(exc=error, countdown=backoff_seconds(self.request.retries)) from None
    celery_app.backend.client.set(sent, 1, ex=settings.idempotency_ttl_seconds)


# At most WEBHOOK_RATE_LIMIT deliveries start per worker: a receiver is not flooded after a backlog.
@celery_app.task(bind=True, max_retries=settings.webhook_max_retries, rate_limit=settings.webhook_rate_limit)
def deliver_webhook(self: Task, event: dict[str, Any]) -> dict[str, int]:
    """POST the event to WEBHOOK_URL; retry what may pass next time, fail at once on the rest.

    Every attempt carries the job id as Idempotency-Key, so a receiver that got an
    attempt whose answer was lost can recognise the next one and not act twice.
    """
    headers = {"Idempotency-Key": self.request.id}
    try:
        response = httpx.post(
            settings.webhook_url, json=event, headers=headers, timeout=settings.webhook_timeout_seconds
        )
    except httpx.TransportError as error:  # refused, reset, timed out: the receiver may be back soon
        raise self.retry(exc=error, countdown=backoff_seconds(self.request.retries)) from None
    if response.is_success:
        return {"status_code": response.status_code}
    error = WebhookFailed(f"{settings.webhook_url} answered {response.status_code} {response.reason_phrase}")
    if response.status_code not in RETRYABLE_STATUS:
        raise error
    raise self.retry(exc=error, countdown=retry_after(response) or backoff_seconds(self.request.retries))


def retry_after(response: httpx.Response) -> float | None:
    """The receiver's own Retry-After (seconds) on a 429 or 503, capped at the backoff maximum."""
    value = response.headers.get("Retry-After", "")
    if response.status_code in (429, 503) and value.isdigit():
        return min(float(value), settings.retry_backoff_cap_seconds)
    return None


@celery_app.task
def add(x: int, y: int) -> int:
    """The seed's long_add: slow on purpose (ADD_DELAY_SECONDS), so you can watch its status."""
    time.sleep(settings.add_delay_seconds)
    return x + y


# bind=True passes the task itself as `self`, so it can call self.update_state.
# The limits are enforced by the prefork pool (the default) only: solo and threads ignore them.
@celery_app.task(
    bind=True, soft_time_limit=settings.report_soft_time_limit_seconds, time_limit=settings.report_time_limit_seconds
)
def generate_report(self: Task, rows: list[float], stop_at_soft_limit: bool = True) -> dict[str, float]:
    """Go through the rows one by one, reporting progress, and return a summary.

    At the soft time limit Celery raises SoftTimeLimitExceeded inside the task: it stops
    cleanly and says how far it got. A task that swallows it (stop_at_soft_limit=False
    shows one) runs on until the hard limit, where the worker kills its process.
    """
    total = len(rows)
    done = 0
    while done < total:
        try:
            process_row(rows[done])
            done += 1
            self.update_state(state="PROGRESS", meta={"current": done, "total": total})
        except SoftTimeLimitExceeded:
            if stop_at_soft_limit:
                limit = settings.report_soft_time_limit_seconds
                raise ReportTimedOut(
                    f"stopped at the soft time limit ({limit:g} s) after {done} of {total} rows"
                ) from None
    return {"rows": total, "sum": sum(rows), "mean": sum(rows) / total, "min": min(rows), "max": max(rows)}


def process_row(row: float) -> None:
    """Stands in for the real work on one row: slow on purpose (REPORT_STEP_SECONDS)."""
    time.sleep(settings.report_step_seconds)


@celery_app.task
def make_thumbnail(stored_name: str) -> dict[str, Any]:
    """The PNG thumbnail of an uploaded image (see uploads.py and thumbnails.py)."""
    return thumbnails.make_thumbnail(stored_name)


@celery_app.task
def send_digest() -> dict[str, int]:
    """E-mail ADMIN_EMAIL how many dead letters wait, and the newest few. `celery beat` sends it."""
    waiting = count_dead_letters()
    newest = list_dead_letters(limit=5)
    lines = [f"{waiting} dead letter(s) wait for a replay or a delete.", ""]
    lines += [f"- {letter['failed_at']} {letter['task']} {letter['job_id']}: {letter['error']}" for letter in newest]
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = settings.admin_email
    message["Subject"] = f"Dead letters: {waiting} waiting"
    message.set_content("\n".join(lines))
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        smtp.send_message(message)
    return {"dead_letters": waiting}
