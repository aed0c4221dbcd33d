"""The job API that every later stage keeps: publish a job, then tell the truth about it.

`enqueue()` answers 202 with the job's id and where to ask; `job_status()` translates
Celery's state into the job API's words, and says 404 for an id that was never issued.
A Redis that is down, slow or misconfigured becomes a 503 that says which (see hardening.py), never a hang.
"""

from typing import Any, Literal
from uuid import uuid4

from celery import Task, states
from fastapi import HTTPException, Response, status
from pydantic import BaseModel

# Part of the stage2_celery package; in a flat project: from celery_app import celery_app
from .celery_app import celery_app
from .hardening import redis_errors_as_503
from .workers import no_worker_note


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class Progress(BaseModel):
    current: int
    total: int


JobState = Literal["queued", "started", "progress", "succeeded", "failed"]


class JobStatus(BaseModel):
    job_id: str
    status: JobState
    backend_status: str  # Celery's own name for the state: PENDING, STARTED, SUCCESS, ...
    result: Any = None
    error: str | None = None
    progress: Progress | None = None
    note: str | None = None  # why a queued job may wait long: no worker consumes its queue


# Celery's states, in the words of the job API.
STATUS_OF_CELERY_STATE: dict[str, JobState] = {
    states.PENDING: "queued",
    states.STARTED: "started",  # only with task_track_started
    "PROGRESS": "progress",  # the custom state of generate_report
    states.SUCCESS: "succeeded",
    states.FAILURE: "failed",
}


def enqueue(task: Task, args: list[Any], response: Response) -> JobAccepted:
    """Mark a new job as issued, publish it, and say where to watch it.

    Celery answers PENDING for any id, even one it never saw, so the job's PENDING
    state is stored first, as its mark (one key, expiring with the result): GET
    /jobs/{id} can then tell "queued" from "never issued". If publishing fails, the
    client gets a 503 and never learns the id, so the mark left behind is harmless.
    """
    job_id = str(uuid4())
    with redis_errors_as_503(celery_app.backend.url):
        celery_app.backend.store_result(job_id, None, states.PENDING)
    with redis_errors_as_503(celery_app.conf.broker_url):
        # retry=False: with the broker gone, fail now rather than retry while the client waits.
        task.apply_async(args, task_id=job_id, retry=False)
    status_url = f"/jobs/{job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job_id, status_url=status_url)


def job_status(job_id: str) -> JobStatus:
    with redis_errors_as_503(celery_app.backend.url):
        # One read, so the state and its data (result, error or progress) belong together.
        meta = celery_app.backend.get_task_meta(job_id)
    # For an id with nothing stored Celery makes up {"status": "PENDING", "result": None};
    # every state it stores, our mark included, carries the task_id.
    if "task_id" not in meta:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job {job_id}: it was never issued, or it has expired.")

    state, info = meta["status"], meta["result"]
    # Any other state (a custom one, set by a running task) counts as started; backend_status names it.
    job = JobStatus(job_id=job_id, status=STATUS_OF_CELERY_STATE.get(state, "started"), backend_status=state)
    if state == states.SUCCESS:
        job.result = info
    elif state == "PROGRESS":
        job.progress = Progress(**info)
    elif isinstance(info, BaseException):
        # Celery rebuilds the task's exception here; the client gets its type and message only.
        job.error = f"{type(info).__name__}: {info}"
    if job.status == "queued":
        with redis_errors_as_503(celery_app.conf.broker_url):
            # Every job of this stage waits in the default queue, "celery".
            job.note = no_worker_note(celery_app.conf.task_default_queue)
    return job
