"""The job API that every later stage keeps: publish a job, then tell the truth about it.

`enqueue()` answers 202 with the job's id and where to ask; `job_status()` translates
Celery's state into the job API's words, and says 404 for an id that was never issued.
A Redis that is down, slow or misconfigured becomes a 503 that says which, never a hang.
New in stage 3: a countdown (`scheduled`), `retrying` with the number of attempts, and
Idempotency-Key, so that a client can repeat a POST without making a second job.
New in stage 4: status URLs under /celery (beside /rq and /dramatiq, see libraries.py), and `asked`.
"""

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
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

# Part of the stage4_rq_dramatiq package; in a flat project: from celery_app import celery_app
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


# An Idempotency-Key is claimed as "pending" first, and points at its job once the job is made.
# A pending claim lives longer than the Redis calls of one enqueue (each gives up after
# REDIS_TIMEOUT_SECONDS): one that nobody completes (Redis ran it after the API gave up) expires.
PENDING_CLAIM_SECONDS = 5 * settings.redis_timeout_seconds
# A request that finds the same request's claim pending waits this long for its job, then is 409.
WAIT_FOR_PENDING_SECONDS = settings.redis_timeout_seconds
# Made within its pending claim's life, a key then expires before its job's mark does.
MADE_CLAIM_SECONDS = max(1, settings.idempotency_key_seconds - PENDING_CLAIM_SECONDS)

# Only while the key still holds this request's pending claim: once that expired, the key may be another's.
MAKE_CLAIM = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end"
)
RELEASE_CLAIM = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"


@dataclass(frozen=True)
class Idempotency:
    key: str
    request: str  # its method and path: the same key on another endpoint is another request


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
        asked = asked or asked_for(task.name, args, float(delay_seconds))
        earlier = claim_idempotency_key(idempotency, job_id, asked)
        if earlier is not None:
            if on_repeat is not None:
                on_repeat()
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


def accepted(job_id: str, response: Response, library: str = "celery") -> JobAccepted:
    status_url = f"/{library}/jobs/{job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job_id, status_url=status_url)


def idempotency_key_name(idempotency: Idempotency) -> str:
    # Stage 4's own keys, per library (its path's first part): no other stage or library answers with these jobs.
    library = idempotency.request.split("/")[1]
    return f"idempotency-key:stage4:{library}:{hashlib.sha256(idempotency.key.encode()).hexdigest()}"


def claim_value(state: Literal["pending", "made"], job_id: str, asked: str, idempotency: Idempotency) -> str:
    """A claim as Redis keeps it: "pending <job id> <what it asks for> POST /celery/jobs/add"."""
    return f"{state} {job_id} {asked} {idempotency.request}"


def claim_idempotency_key(idempotency: Idempotency, job_id: str, asked: str) -> str | None:
    """Claim the key for a job about to be made (SET NX: one request wins), or return the job an
    earlier request with this key made."""
    name = idempotency_key_name(idempotency)
    deadline = time.monotonic() + WAIT_FOR_PENDING_SECONDS
    while True:
        with redis_errors_as_503(celery_app.backend.url):
            pending = claim_value("pending", job_id, asked, idempotency)
            if celery_app.backend.client.set(name, pending, nx=True, px=round(PENDING_CLAIM_SECONDS * 1000)):
                return None
        earlier = made_job(idempotency, asked, deadline)
        if earlier is not None:
            return earlier
        # The claim was given up (its job was not made), or it expired: claim the key again.


def complete_claim(idempotency: Idempotency, job_id: str, asked: str, made: bool) -> None:
    """Point the key at its job once the job is made, or free the key if it was not made.

    A key left pending (Redis does not answer) expires by itself: the client's retry then makes the job.
    """
    name, pending = idempotency_key_name(idempotency), claim_value("pending", job_id, asked, idempotency)
    with suppress(RedisTrouble), redis_errors_as_503(celery_app.backend.url):
        client = celery_app.backend.client
        if not made:
            client.eval(RELEASE_CLAIM, 1, name, pending)
            return
        made_claim = claim_value("made", job_id, asked, idempotency)
        if not client.eval(MAKE_CLAIM, 1, name, pending, made_claim, round(MADE_CLAIM_SECONDS * 1000)):
            logger.warning("The Idempotency-Key's claim expired before its job %s was made: Redis is slow.", job_id)


def earlier_job(idempotency: Idempotency) -> str | None:
    """The job an earlier request with this key made, if any (without claiming the key)."""
    return made_job(idempotency, None, time.monotonic() + WAIT_FOR_PENDING_SECONDS)


def made_job(idempotency: Idempotency, asked: str | None, deadline: float) -> str | None:
    """The job the key points at, waiting until the deadline for a pending one (then 409); None if
    the key is free. A key claimed by another request is 422.

    asked: None for a replay, which asks before its job is known (its path names the dead letter).
    """
    name = idempotency_key_name(idempotency)
    while True:
        with redis_errors_as_503(celery_app.backend.url):
            earlier = celery_app.backend.client.get(name)
            if earlier is None:
                return None
            state, job_id, earlier_asked, earlier_request = earlier.decode().split(" ", 3)
            if earlier_request != idempotency.request or asked not in (None, earlier_asked):
                # The IETF Idempotency-Key draft's choice: a key reused for another request is an error.
                problem = "This Idempotency-Key was used with another request: use a new key for a new request."
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    [{"type": "idempotency_key_reused", "loc": ["header", "idempotency-key"], "msg": problem}],
                )
            if state == "made":
                return job_id
            if time.monotonic() >= deadline:
                # The draft's answer to a request whose twin is still being processed; the claim says how long at most.
                retry_after = max(1, math.ceil(celery_app.backend.client.pttl(name) / 1000))
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    "A request with this Idempotency-Key is still being processed: try again later.",
                    headers={"Retry-After": str(retry_after)},
                )
        time.sleep(0.05)


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


def cannot_run(job_id: str, task: str) -> HTTPException:
    """A 409 for a dead letter whose replay cannot run here (the letter is kept)."""
    return HTTPException(
        status.HTTP_409_CONFLICT,
        f"Dead letter {job_id} is a job of {task}, a task this app cannot run: the letter is from another app, "
        "or the task was renamed since. It is kept: replay it where that task is, or delete it.",
    )


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
