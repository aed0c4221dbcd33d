"""The job API that every later stage keeps: publish a job, then tell the truth about it.

`enqueue()` answers 202 with the job's id and where to ask; `job_status()` translates
Celery's state into the job API's words, and says 404 for an id that was never issued.
A Redis that is down, slow or misconfigured becomes a 503 that says which, never a hang.
New in stage 3: a countdown (`scheduled`), `retrying` with the number of attempts, and
Idempotency-Key, so that a client can repeat a POST without making a second job.
"""

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import uuid4

from celery import Task, states
from fastapi import Header, HTTPException, Request, Response, status
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url
from pydantic import BaseModel
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Part of the stage3_retries package; in a flat project: from celery_app import celery_app
from .celery_app import celery_app
from .config import settings

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
    attempts: int | None = None  # how many times a worker started it, redeliveries included
    run_at: datetime | None = None  # when a scheduled job is due
    result: Any = None
    error: str | None = None
    progress: Progress | None = None


# Celery's states, in the words of the job API.
STATUS_OF_CELERY_STATE: dict[str, JobState] = {
    states.PENDING: "queued",
    states.STARTED: "started",  # only with task_track_started
    "PROGRESS": "progress",  # the custom state of generate_report
    states.RETRY: "retrying",  # waiting for the next attempt; the result is the last error
    states.SUCCESS: "succeeded",
    states.FAILURE: "failed",
}


@dataclass(frozen=True)
class Idempotency:
    key: str
    fingerprint: str  # of the request: the same key with another request is refused


async def idempotency(
    request: Request,
    idempotency_key: Annotated[str | None, Header(pattern=r"^[\x21-\x7e]{1,255}$")] = None,
) -> Idempotency | None:
    """The optional Idempotency-Key header: 1 to 255 visible characters, else 422."""
    if idempotency_key is None:
        return None
    digest = hashlib.sha256(f"{request.method} {request.url.path}\n".encode() + await request.body())
    return Idempotency(idempotency_key, digest.hexdigest())


def enqueue(
    task: Task, args: list[Any], response: Response, idempotency: Idempotency | None = None, delay_seconds: float = 0
) -> JobAccepted:
    """Mark a new job as issued, publish it, and say where to watch it.

    Celery answers PENDING for any id, even one it never saw, so the job's PENDING
    state is stored first, as its mark (one key, expiring with the result): GET
    /jobs/{id} can then tell "queued" from "never issued". If publishing fails, the
    client gets a 503 and never learns the id, so the mark left behind is harmless.

    With an Idempotency-Key, the key is claimed before anything else: of two requests
    with the same key, the first makes the job and the second answers with its id.
    """
    job_id = str(uuid4())
    if idempotency is not None:
        earlier = claim_idempotency_key(idempotency, job_id)
        if earlier is not None:
            return accepted(earlier, response)
    run_at = datetime.now(UTC) + timedelta(seconds=delay_seconds) if delay_seconds else None
    try:
        with redis_errors_as_503(celery_app.backend.url):
            # A scheduled job's mark also says when it is due.
            mark = {"run_at": run_at.isoformat()} if run_at else None
            celery_app.backend.store_result(job_id, mark, states.PENDING)
        with redis_errors_as_503(celery_app.conf.broker_url):
            # retry=False: with the broker gone, fail now rather than retry while the client waits.
            # No time limits in the message: the worker's own settings apply (Celery would
            # otherwise copy this process's limits into every message it publishes).
            task.apply_async(args, task_id=job_id, retry=False, eta=run_at, soft_time_limit=None, time_limit=None)
    except RedisTrouble as trouble:
        if idempotency is not None and not trouble.timed_out:
            # The job was not made: let a retry with the same key make it. (After a timeout
            # it may have been, so the key keeps pointing at it.)
            with suppress(RedisError):
                celery_app.backend.client.delete(idempotency_key_name(idempotency))
        raise
    return accepted(job_id, response)


def accepted(job_id: str, response: Response) -> JobAccepted:
    status_url = f"/jobs/{job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job_id, status_url=status_url)


def idempotency_key_name(idempotency: Idempotency) -> str:
    return f"idempotency-key:{hashlib.sha256(idempotency.key.encode()).hexdigest()}"


def claim_idempotency_key(idempotency: Idempotency, job_id: str) -> str | None:
    """Claim the key for this job (SET NX: one request wins), or return the job that has it."""
    name = idempotency_key_name(idempotency)
    claim = f"{idempotency.fingerprint} {job_id}"
    with redis_errors_as_503(celery_app.backend.url):
        client = celery_app.backend.client
        if client.set(name, claim, nx=True, ex=settings.idempotency_key_seconds):
            return None
        earlier = client.get(name)
    return job_of_the_same_request(idempotency, earlier)


def earlier_job(idempotency: Idempotency) -> str | None:
    """The job an earlier request with this key made, if any (without claiming the key)."""
    with redis_errors_as_503(celery_app.backend.url):
        earlier = celery_app.backend.client.get(idempotency_key_name(idempotency))
    return None if earlier is None else job_of_the_same_request(idempotency, earlier)


def job_of_the_same_request(idempotency: Idempotency, earlier: bytes | None) -> str:
    """The job id of a claimed key, if the claim was made by the same request; else 422."""
    fingerprint, _, earlier_job_id = (earlier or b"").decode().partition(" ")
    if fingerprint != idempotency.fingerprint:
        # The IETF Idempotency-Key draft's choice: a key reused for another request is an error.
        problem = "This Idempotency-Key was used with another request: use a new key for a new request."
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [{"type": "idempotency_key_reused", "loc": ["header", "idempotency-key"], "msg": problem}],
        )
    return earlier_job_id


def job_status(job_id: str) -> JobStatus:
    with redis_errors_as_503(celery_app.backend.url):
        # One read, so the state and its data (result, error or progress) belong together.
        meta = celery_app.backend.get_task_meta(job_id)
        attempts = celery_app.backend.client.get(f"job-attempts:{job_id}")
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
    return job


class RedisTrouble(HTTPException):
    """A 503 for a Redis call that failed; timed_out: Redis may have done it, but did not answer."""

    def __init__(self, detail: str, timed_out: bool) -> None:
        super().__init__(status.HTTP_503_SERVICE_UNAVAILABLE, detail)
        self.timed_out = timed_out


@contextmanager
def redis_errors_as_503(url: str | None, timeout_seconds: float = settings.redis_timeout_seconds) -> Iterator[None]:
    """Turn a failed Redis call into a 503 that says what went wrong, and log the cause."""
    try:
        yield
    except (RedisError, OperationalError) as error:
        where = f"The job queue (Redis at {maybe_sanitize_url(url or '')})"
        # kombu wraps the broker's connection errors in its own OperationalError.
        cause = (error.__cause__ or error.__context__) if isinstance(error, OperationalError) else error
        timed_out = isinstance(cause, RedisTimeoutError | TimeoutError)
        if timed_out:
            detail = f"{where} did not answer within {timeout_seconds:g} s: try again later."
        elif isinstance(cause, RedisConnectionError | OSError) and not isinstance(cause, AuthenticationError):
            detail = f"{where} is not reachable: is Redis running there, and is REDIS_URL right?"
        else:
            detail = f"{where} answered with an error: {error}"
        logger.warning("%s The cause: %s: %s", detail, type(cause).__name__, cause)
        raise RedisTrouble(detail, timed_out) from error
