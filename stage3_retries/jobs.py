"""The job API that every later stage keeps: publish a job, then tell the truth about it.

`enqueue()` answers 202 with the job's id and where to ask; `job_status()` translates
Celery's state into the job API's words, and says 404 for an id that was never issued.
A Redis that is down, slow or misconfigured becomes a 503 that says which (see hardening.py), never a hang.
New in stage 3: a countdown (`scheduled`), `retrying` with the number of attempts, and
Idempotency-Key, so that a client can repeat a POST without making a second job.
"""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import uuid4

from celery import Task, states
from fastapi import Header, HTTPException, Request, Response, status
from pydantic import BaseModel

# Part of the stage3_retries package; in a flat project: from celery_app import celery_app
from .celery_app import attempts_key, celery_app
from .hardening import Idempotency, RedisTrouble, claim_idempotency_key, complete_claim, redis_errors_as_503
from .workers import no_worker_note


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
    task: Task, args: list[Any], response: Response, idempotency: Idempotency | None = None, delay_seconds: float = 0
) -> JobAccepted:
    """Mark a new job as issued, publish it, and say where to watch it.

    Celery answers PENDING for any id, even one it never saw, so the job's PENDING
    state is stored first, as its mark (one key, expiring with the result): GET
    /jobs/{id} can then tell "queued" from "never issued". If publishing fails, the
    client gets a 503 and never learns the id, so the mark left behind is harmless.

    With an Idempotency-Key, the key is claimed before anything else, as pending: of two
    requests with the same key, the first makes the job, and the second waits for it and
    answers its id. The key points at the job only once the job is made.
    """
    job_id = str(uuid4())
    if idempotency is not None:
        # float: a default 0 and a 0 sent are one delay.
        asked = asked_for(task.name, args, float(delay_seconds))
        earlier = claim_idempotency_key(idempotency, job_id, asked)
        if earlier is not None:
            return accepted(earlier, response)
    run_at = datetime.now(UTC) + timedelta(seconds=delay_seconds) if delay_seconds else None
    publishing = False
    try:
        with redis_errors_as_503(celery_app.backend.url):
            # A scheduled job's mark also says when it is due.
            mark = {"run_at": run_at.isoformat()} if run_at else None
            celery_app.backend.store_result(job_id, mark, states.PENDING)
        publishing = True
        with redis_errors_as_503(celery_app.conf.broker_url):
            # retry=False: with the broker gone, fail now rather than retry while the client waits.
            # No time limits in the message: the worker's own settings apply (Celery would
            # otherwise copy this process's limits into every message it publishes).
            task.apply_async(args, task_id=job_id, retry=False, eta=run_at, soft_time_limit=None, time_limit=None)
    except RedisTrouble as trouble:
        if idempotency is not None:
            # Not made: the key is free for the client's retry. But Redis may still run a publish
            # that timed out: then the key points at the job, the one honest "it may have been made".
            complete_claim(idempotency, job_id, asked, made=publishing and trouble.timed_out)
        raise
    if idempotency is not None:
        complete_claim(idempotency, job_id, asked, made=True)
    return accepted(job_id, response)


def accepted(job_id: str, response: Response) -> JobAccepted:
    status_url = f"/jobs/{job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job_id, status_url=status_url)


def job_status(job_id: str) -> JobStatus:
    with redis_errors_as_503(celery_app.backend.url):
        # One read, so the state and its data (result, error or progress) belong together.
        meta = celery_app.backend.get_task_meta(job_id)
        attempts = celery_app.backend.client.get(attempts_key(job_id))
    # For an id with nothing stored Celery makes up {"status": "PENDING", "result": None};
    # every state it stores, our mark included, carries the task_id.
    if "task_id" not in meta:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job {job_id}: it was never issued, or it has expired.")

    state, info = meta["status"], meta["result"]
    # Any other state (a custom one, set by a running task) counts as started; backend_status names it.
    job = JobStatus(job_id=job_id, status=STATUS_OF_CELERY_STATE.get(state, "started"), backend_status=state)
    if attempts is not None:
        job.attempts = int(attempts)
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
    if job.status == "queued":
        with redis_errors_as_503(celery_app.conf.broker_url):
            # Every job of this stage waits in the default queue, "celery".
            job.note = no_worker_note(celery_app.conf.task_default_queue)
    return job


def cannot_run(job_id: str, task: str) -> HTTPException:
    """A 409 for a dead letter whose replay cannot run here (the letter is kept)."""
    return HTTPException(
        status.HTTP_409_CONFLICT,
        f"Dead letter {job_id} is a job of {task}, a task this app cannot run: the letter is from another app, "
        "or the task was renamed since. It is kept: replay it where that task is, or delete it.",
    )
