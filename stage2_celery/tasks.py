"""The work, now as Celery tasks: a worker process runs them, not the API."""

import smtplib
import time
from email.message import EmailMessage

from celery import Task

# Part of the stage2_celery package; in a flat project: from celery_app import celery_app
from .celery_app import celery_app
from .config import settings


@celery_app.task
def send_welcome_email(user_id: int, to: str) -> None:
    """Send the welcome e-mail over SMTP.

    The same code as in stage 1, now run by a worker: the job waits in Redis until a
    worker takes it, so restarting the API loses nothing that was accepted.
    """
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = to
    message["Subject"] = "Welcome!"
    message.set_content(f"Hello user {user_id}, thank you for signing up.")
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        smtp.send_message(message)


@celery_app.task
def add(x: int, y: int) -> int:
    """The seed's long_add: slow on purpose (ADD_DELAY_SECONDS), so you can watch its status."""
    time.sleep(settings.add_delay_seconds)
    return x + y


# bind=True passes the task itself as `self`, so it can call self.update_state.
@celery_app.task(bind=True)
def generate_report(self: Task, rows: list[float]) -> dict[str, float]:
    """Go through the rows one by one, reporting progress, and return a summary.

    update_state stores the custom state PROGRESS with {current, total} in the result
    backend, where GET /jobs/{id} reads it while the task runs.
    """
    total = len(rows)
    for done, row in enumerate(rows, start=1):
        process_row(row)
        self.update_state(state="PROGRESS", meta={"current": done, "total": total})
    return {"rows": total, "sum": sum(rows), "mean": sum(rows) / total, "min": min(rows), "max": max(rows)}


def process_row(row: float) -> None:
    """Stands in for the real work on one row: slow on purpose (REPORT_STEP_SECONDS)."""
    time.sleep(settings.report_step_seconds)
