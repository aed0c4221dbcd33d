"""The Celery tasks: retried with backoff, safe to run twice. The work itself is in work.py."""

from email.message import EmailMessage
from typing import Any

import httpx
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_prerun

# Part of the stage3_retries package; in a flat project: from celery_app import celery_app
from .celery_app import attempts_key, celery_app
from .config import settings
from .dead_letters import count_dead_letters, list_dead_letters
from .work import (
    SMTP_CONNECTION_ERRORS,
    ReportTimedOut,
    WebhookFailed,
    add_slowly,
    backoff_seconds,
    post_event,
    process_row,
    send_email,
    summary,
    welcome_email,
)


@task_prerun.connect
def count_attempt(task_id: str, task: Task, **_: Any) -> None:
    """Count every time a worker starts a job: retries and redeliveries after a crash alike."""
    if task.app is not celery_app:
        return  # a signal reaches every Celery app of the process: count this stage's jobs only
    with celery_app.backend.client.pipeline() as pipe:
        pipe.incr(attempts_key(task_id)).expire(attempts_key(task_id), settings.result_expires_seconds).execute()


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
    try:
        send_email(welcome_email(user_id, to))
    except SMTP_CONNECTION_ERRORS as error:
        raise self.retry(exc=error, countdown=backoff_seconds(self.request.retries)) from None
    celery_app.backend.client.set(sent, 1, ex=settings.idempotency_ttl_seconds)


@celery_app.task(bind=True, max_retries=settings.webhook_max_retries)
def deliver_webhook(self: Task, event: dict[str, Any]) -> dict[str, int]:
    """POST the event to WEBHOOK_URL; retry what may pass next time, fail at once on the rest."""
    try:
        return post_event(event, idempotency_key=self.request.id)
    except httpx.TransportError as error:  # refused, reset, timed out: the receiver may be back soon
        raise self.retry(exc=error, countdown=backoff_seconds(self.request.retries)) from None
    except WebhookFailed as error:
        if not error.retryable:
            raise
        raise self.retry(exc=error, countdown=error.retry_after or backoff_seconds(self.request.retries)) from None


@celery_app.task
def add(x: int, y: int) -> int:
    return add_slowly(x, y)


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
                stopped = f"stopped at the soft time limit ({limit:g} s) after {done} of {total} rows"
                raise ReportTimedOut(stopped) from None
    return summary(rows)


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
    send_email(message)
    return {"dead_letters": waiting}
