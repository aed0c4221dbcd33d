"""The job API that every later stage keeps: publish a job, then tell the truth about it.

`enqueue()` answers 202 with the job's id and where to ask; `job_status()` translates
Celery's state into the job API's words, and says 404 for an id that was never issued.
A Redis that is down, slow or misconfigured becomes a 503 that says which (see hardening.py), never a hang.
New in stage 3: a countdown (`scheduled`), `retrying` with the number of attempts, and
Idempotency-Key, so that a client can repeat a POST without making a second job.
New in stage 5: a job's queue and priority, a metric and a log line for each job published.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import uuid4

from celery import Task, states
from fastapi import Header, HTTPException, Request, Response, status
from pydantic import BaseModel

# Part of the stage5_monitoring package; in a flat project: from celery_app import celery_app
from .celery_app import attempts_key, celery_app, queue_of
from .config import settings
from .hardening import Idempotency, RedisTrouble, claim_idempotency_key, complete_claim, redis_errors_as_503
from .metrics import JOBS_ENQUEUED
from .workers import no_worker_note

logger = logging.getLogger(__name__)


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class Progress(BaseModel):
    current: int
    total: int


JobState = Literal["queued", "scheduled", "started", "progress", "retrying", "succeeded", "failed"]


class JobStatus(BaseModel):
    job_id: str
    status: JobState
    backend_status: str  # Celery's own name for the state: PENDING, STARTED, SUCCESS, ...
    queue: str | None = None  # the queue the job waits (or waited) in
    attempts: int | None = None  # how many times a worker started it, redeliveries included
    run_at: datetime | None = None  # when a scheduled job is due
    result: Any = None
    error: str | None = None
    progress: Progress | None = None
    note: str | None = None  # why a queued job may wait long: no worker consumes its queue


# Celery's states, in the words of the job API.
STATUS_OF_CELERY_STATE: dict[str, JobState] = {
    states.PENDING: "queued",
    states.STARTED: "started",  # only with task_track_started
    "PROGRESS": "progress",  # the custom state of generate_report
    states.RETRY: "retrying",  # waiting for the next attempt; the result is the last error
    states.SUCCESS: "succeeded",
    states.FAILURE: "failed",
}


async def idempotency(
    request: Request,
    idempotency_key: Annotated[str | None, Header(pattern=r"^[\x21-\x7e]{1,255}$")] = None,
) -> Idempotency | None:
    """The optional Idempotency-Key header: 1 to 255 visible characters, else 422.

    The body is not read here: what a request asks for is known once FastAPI has validated it (asked_for).
    """
    if idempotency_key is None:
        return None
    return Idempotency(idempotency_key, f"{request.method} {request.url.path}")


def asked_for(*job: Any) -> str:
    """What a request asks for, as a digest of the job it makes; not of its bytes, so the same JSON
    with its keys in another order, other spaces or a default spelled out is the same request."""
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


def enqueue(
    task: Task,
    args: list[Any],
    response: Response,
    idempotency: Idempotency | None = None,
    delay_seconds: float = 0,
    priority: int | None = None,
    on_repeat: Callable[[], None] | None = None,
    asked: str | None = None,
) -> JobAccepted:
    """Mark a new job as issued, publish it, and say where to watch it.

    Celery answers PENDING for any id, even one it never saw, so the job's PENDING
    state is stored first, as its mark (one key, expiring with the result): GET
    /jobs/{id} can then tell "queued" from "never issued". If publishing fails, the
    client gets a 503 and never learns the id, so the mark left behind is harmless.

    With an Idempotency-Key, the key is claimed before anything else, as pending: of two
    requests with the same key, the first makes the job, and the second waits for it and
    answers its id. The key points at the job only once the job is made. `asked`: what the
    request asks for, where its arguments do not say it (see uploads.enqueue_upload).
    """
    job_id = str(uuid4())
    if idempotency is not None:
        # float: a default 0 and a 0 sent are one delay.
        asked = asked or asked_for(task.name, args, float(delay_seconds), priority)
        earlier = claim_idempotency_key(idempotency, job_id, asked)
        if earlier is not None:
            if on_repeat is not None:
                on_repeat()
            return accepted(earlier, response)
    run_at = datetime.now(UTC) + timedelta(seconds=delay_seconds) if delay_seconds else None
    queue = queue_of(task.name)
    publishing = False
    try:
        with redis_errors_as_503(celery_app.backend.url):
            # A scheduled job's mark also says when it is due.
            mark = {"run_at": run_at.isoformat()} if run_at else None
            celery_app.backend.store_result(job_id, mark, states.PENDING)
            # The worker's states overwrite the mark, so the queue is kept beside it, as long.
            celery_app.backend.client.set(queue_key(job_id), queue, ex=settings.result_expires_seconds)
        publishing = True
        with redis_errors_as_503(celery_app.conf.broker_url):
            # retry=False: with the broker gone, fail now rather than retry while the client waits.
            # No time limits in the message: the worker's own settings apply (Celery would
            # otherwise copy this process's limits into every message it publishes).
            # No priority: leave it out, for task_default_priority (priority=None would be 0, the highest).
            priority_option = {} if priority is None else {"priority": priority}
            task.apply_async(
                args, task_id=job_id, retry=False, eta=run_at, soft_time_limit=None, time_limit=None, **priority_option
            )
    except RedisTrouble as trouble:
        if idempotency is not None:
            # Not made: the key is free for the client's retry. But Redis may still run a publish
            # that timed out: then the key points at the job, the one honest "it may have been made".
            complete_claim(idempotency, job_id, asked, made=publishing and trouble.timed_out)
        raise
    if idempotency is not None:
        complete_claim(idempotency, job_id, asked, made=True)
    JOBS_ENQUEUED.labels(task=task.name, queue=queue).inc()
    if priority is None:
        priority = celery_app.conf.task_default_priority
    logger.info("job enqueued", extra={"job_id": job_id, "task": task.name, "queue": queue, "priority": priority})
    return accepted(job_id, response)


def queue_key(job_id: str) -> str:
    return f"job-queue:{job_id}"


def accepted(job_id: str, response: Response) -> JobAccepted:
    status_url = f"/jobs/{job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job_id, status_url=status_url)


def job_status(job_id: str) -> JobStatus:
    with redis_errors_as_503(celery_app.backend.url):
        # One read, so the state and its data (result, error or progress) belong together.
        meta = celery_app.backend.get_task_meta(job_id)
        attempts, queue = celery_app.backend.client.mget(attempts_key(job_id), queue_key(job_id))
    # For an id with nothing stored Celery makes up {"status": "PENDING", "result": None};
    # every state it stores, our mark included, carries the task_id.
    if "task_id" not in meta:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job {job_id}: it was never issued, or it has expired.")

    state, info = meta["status"], meta["result"]
    # Any other state (a custom one, set by a running task) counts as started; backend_status names it.
    job = JobStatus(job_id=job_id, status=STATUS_OF_CELERY_STATE.get(state, "started"), backend_status=state)
    if attempts is not None:
        job.attempts = int(attempts)
    if queue is not None:
        job.queue = queue.decode()
    if state == states.SUCCESS:
        job.result = info
    elif state == "PROGRESS":
        job.progress = Progress(**info)
    elif state == states.PENDING and isinstance(info, dict) and "run_at" in info:
        job.run_at = datetime.fromisoformat(info["run_at"])
        if job.run_at > datetime.now(UTC):
            job.status = "scheduled"
    elif isinstance(info, BaseException):
        # Celery rebuilds the task's exception here; the client gets its type and message only.
        job.error = f"{type(info).__name__}: {info}"
    if job.status == "queued" and job.queue is not None:
        with redis_errors_as_503(celery_app.conf.broker_url):
            job.note = no_worker_note(job.queue)
    return job


def cannot_run(job_id: str, task: str) -> HTTPException:
    """A 409 for a dead letter whose replay cannot run here (the letter is kept)."""
    return HTTPException(
        status.HTTP_409_CONFLICT,
        f"Dead letter {job_id} is a job of {task}, a task this app cannot run: the letter is from another app, "
        "or the task was renamed since. It is kept: replay it where that task is, or delete it.",
    )
