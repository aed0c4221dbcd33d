"""The RQ jobs: plain functions, run by `rq worker`; the work itself is in work.py.

RQ has no task decorator: a job is any importable function, enqueued with its options
(retries, timeout) by rq_jobs.py. Inside a job, get_current_job() is the job itself:
its id, its meta (for progress), its number of retries so far.
"""

from typing import Any

from rq import get_current_job

# Part of the stage4_rq_dramatiq package; in a flat project: from work import ...
from . import thumbnails, work
from .config import settings


def send_welcome_email(user_id: int, to: str) -> None:
    """Send the welcome e-mail, once per job; retried by RQ on any error (see rq_jobs.retries)."""
    job = get_current_job()
    sent = f"welcome-email-sent:{job.id}"
    if job.connection.exists(sent):
        return  # this job's e-mail went out already
    work.send_email(work.welcome_email(user_id, to))
    job.connection.set(sent, 1, ex=settings.idempotency_ttl_seconds)


def deliver_webhook(event: dict[str, Any]) -> dict[str, int]:
    """POST the event; RQ retries any exception, a 400 too: it cannot tell a job "do not retry"."""
    return work.post_event(event, idempotency_key=get_current_job().id)


def add(x: int, y: int) -> int:
    return work.add_slowly(x, y)


def generate_report(rows: list[float]) -> dict[str, float]:
    """Progress goes into the job's meta, saved after every row. RQ has one, hard, time limit
    (job_timeout): no soft limit to stop at."""
    job = get_current_job()
    for done, row in enumerate(rows, start=1):
        work.process_row(row)
        job.meta["progress"] = {"current": done, "total": len(rows)}
        job.save_meta()
    return work.summary(rows)


def make_thumbnail(stored_name: str) -> dict[str, Any]:
    return thumbnails.make_thumbnail(stored_name)
