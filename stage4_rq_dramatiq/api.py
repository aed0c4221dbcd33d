"""The job API of stage 3, mounted once per library: the same routes and the same answers,
whichever library runs the jobs. Each library plugs in through a `JobBackend`
(jobs.py for Celery, rq_jobs.py for RQ, dramatiq_jobs.py for Dramatiq).
"""

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import urlsplit
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, JsonValue
from redis import Redis, RedisError
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Part of the stage4_rq_dramatiq package; in a flat project: from config import settings
from .config import settings
from .uploads import UPLOAD_FORM_OPENAPI, StoredImage, upload_dir

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
    backend_status: str  # the library's own name for the state: PENDING (Celery), finished (RQ), ...
    attempts: int | None = None  # how many times a worker started it, redeliveries included
    run_at: datetime | None = None  # when a scheduled job is due
    result: Any = None
    error: str | None = None
    progress: Progress | None = None


class DeadLetter(BaseModel):
    job_id: str
    task: str
    args: list[Any]
    error: str
    attempts: int
    failed_at: str


class Event(BaseModel):
    # Any JSON object, but no NaN or Infinity in it: an event with one could never be sent.
    model_config = ConfigDict(allow_inf_nan=False)
    type: str = Field(pattern=r"^[a-z][a-z0-9_.]*$", max_length=64, examples=["user.created"])
    payload: dict[str, JsonValue] = Field(default_factory=dict)


class AddRequest(BaseModel):
    x: int
    y: int
    # Run it later; a countdown must end before the visibility timeout (see config.py).
    delay_seconds: float = Field(0, ge=0, le=settings.longest_delay_seconds)


class ReportRequest(BaseModel):
    # Finite numbers only: a NaN row makes a NaN sum, which JSON has not (the answer would say null).
    rows: list[FiniteFloat] = Field(min_length=1, max_length=10_000, examples=[[3, 1, 4, 1, 5]])
    # False shows a task that swallows its soft time limit (Celery only: the others have no soft limit).
    stop_at_soft_limit: bool = True


# The jobs every library runs, by the job API's names for them.
Task = Literal["add", "report", "welcome", "webhook", "thumbnail"]


class JobBackend(Protocol):
    """What a library does for the job API. Each raises RedisTrouble (via redis_errors_as_503) when Redis fails."""

    name: str  # the URL prefix: celery, rq, dramatiq

    def enqueue(self, task: Task, args: list[Any], job_id: str, delay_seconds: float) -> None:
        """Its RedisTrouble is timed_out only where Redis may still make the job (not before it publishes)."""

    def status(self, job_id: str) -> JobStatus | None: ...

    def dead_letters(self, limit: int) -> list[DeadLetter]: ...

    def replay(self, job_id: str) -> str | None:
        """Run a dead letter's job again; the id to follow (new, or the same where the library keeps it)."""

    def delete_dead_letter(self, job_id: str) -> bool: ...


# The API's own Redis, for Idempotency-Keys: the same for every library.
idempotency_store = Redis.from_url(
    settings.redis_url,
    socket_connect_timeout=settings.redis_timeout_seconds,
    socket_timeout=settings.redis_timeout_seconds,
)


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


IdempotencyKey = Annotated[Idempotency | None, Depends(idempotency)]
UserId = Annotated[int, Path(gt=0, description="A positive user id")]


def job_api(backend: JobBackend) -> APIRouter:
    """The job API's routes for one library, under /<library>."""
    router = APIRouter(prefix=f"/{backend.name}", tags=[backend.name])

    def submit(
        task: Task, args: list[Any], response: Response, key: Idempotency | None, delay: float = 0
    ) -> JobAccepted:
        return enqueue(backend, task, args, response, key, delay)

    # 202 Accepted, not 200: the work is accepted now and done later, by a worker.
    @router.post("/users/{user_id}/welcome", status_code=status.HTTP_202_ACCEPTED)
    def welcome_user(user_id: UserId, response: Response, key: IdempotencyKey) -> JobAccepted:
        return submit("welcome", [user_id, f"user{user_id}@example.com"], response, key)

    @router.post("/events", status_code=status.HTTP_202_ACCEPTED)
    def publish_event(event: Event, response: Response, key: IdempotencyKey) -> JobAccepted:
        return submit("webhook", [event.model_dump()], response, key)

    @router.post("/jobs/add", status_code=status.HTTP_202_ACCEPTED)
    def enqueue_add(request: AddRequest, response: Response, key: IdempotencyKey) -> JobAccepted:
        return submit("add", [request.x, request.y], response, key, request.delay_seconds)

    @router.post("/jobs/report", status_code=status.HTTP_202_ACCEPTED)
    def enqueue_report(request: ReportRequest, response: Response, key: IdempotencyKey) -> JobAccepted:
        return submit("report", [request.rows, request.stop_at_soft_limit], response, key)

    # The message carries the stored file's name, never its bytes (see uploads.py).
    @router.post("/thumbnails", status_code=status.HTTP_202_ACCEPTED, openapi_extra=UPLOAD_FORM_OPENAPI)
    def enqueue_thumbnail(stored_name: StoredImage, response: Response, key: IdempotencyKey) -> JobAccepted:
        stored = upload_dir() / stored_name
        # The stored name is new each time: the same image is the same request, another image another one.
        asked = asked_for("thumbnail", hashlib.sha256(stored.read_bytes()).hexdigest()) if key else None
        # Not kept when no job will read it: a refused request, or a repeat (the first one's file is the job's).
        discard = partial(stored.unlink, missing_ok=True)
        try:
            return enqueue(backend, "thumbnail", [stored_name], response, key, 0, on_repeat=discard, asked=asked)
        except HTTPException:
            discard()
            raise

    # A job id is a UUID: anything else is answered 422, naming job_id, and never reaches Redis.
    @router.get("/jobs/{job_id}", response_model_exclude_none=True)
    def get_job(job_id: UUID) -> JobStatus:
        job = backend.status(str(job_id))
        if job is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job {job_id}: it was never issued, or it has expired.")
        return job

    @router.get("/dead-letters")
    def get_dead_letters(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[DeadLetter]:
        """The jobs that failed for good, newest first."""
        return backend.dead_letters(limit)

    @router.post("/dead-letters/{job_id}/replay", status_code=status.HTTP_202_ACCEPTED)
    def replay_dead_letter(job_id: UUID, response: Response, key: IdempotencyKey) -> JobAccepted:
        """Run the job again: a new job id where the library allows it (the answer says which id to follow).

        With an Idempotency-Key, a repeated replay answers the job the first one made.
        """
        if key is not None and (earlier := earlier_job(backend, key)) is not None:
            return accepted(earlier, response, backend)
        to_follow = backend.replay(str(job_id))
        if to_follow is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"No dead letter {job_id}.")
        if key is not None:
            # The job is made: a key used meanwhile for another request (422) changes nothing of that.
            with suppress(HTTPException):
                claim_idempotency_key(backend, key, to_follow)
        return accepted(to_follow, response, backend)

    @router.delete("/dead-letters/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
    def delete_dead_letter(job_id: UUID) -> None:
        if not backend.delete_dead_letter(str(job_id)):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"No dead letter {job_id}.")

    return router


def enqueue(
    backend: JobBackend,
    task: Task,
    args: list[Any],
    response: Response,
    key: Idempotency | None,
    delay: float,
    on_repeat: Callable[[], None] | None = None,
    asked: str | None = None,
) -> JobAccepted:
    """Claim the Idempotency-Key (if any) as pending, have the library enqueue the job under a new
    id, then point the key at the job. `asked`: what the request asks for, where its arguments do
    not say it (see enqueue_thumbnail)."""
    job_id = str(uuid4())
    if key is not None:
        # float: a default 0 and a 0 sent are one delay.
        asked = asked or asked_for(task, args, float(delay))
        earlier = claim_idempotency_key(backend, key, job_id, asked, "pending")
        if earlier is not None:
            if on_repeat is not None:
                on_repeat()
            return accepted(earlier, response, backend)
    try:
        backend.enqueue(task, args, job_id, delay)
    except RedisTrouble as trouble:
        if key is not None:
            # Not made: the key is free for the client's retry. But Redis may still run a publish
            # that timed out: then the key points at the job, the one honest "it may have been made".
            complete_claim(backend, key, job_id, asked, made=trouble.timed_out)
        raise
    if key is not None:
        complete_claim(backend, key, job_id, asked, made=True)
    return accepted(job_id, response, backend)


def accepted(job_id: str, response: Response, backend: JobBackend) -> JobAccepted:
    status_url = f"/{backend.name}/jobs/{job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job_id, status_url=status_url)


def idempotency_key_name(backend: JobBackend, key: Idempotency) -> str:
    # Stage 4's own keys, per library: another stage on the same Redis never answers with these jobs.
    return f"idempotency-key:stage4:{backend.name}:{hashlib.sha256(key.key.encode()).hexdigest()}"


def claim_value(state: Literal["pending", "made"], job_id: str, asked: str, key: Idempotency) -> str:
    """A claim as Redis keeps it: "pending <job id> <what it asks for> POST /rq/jobs/add"."""
    return f"{state} {job_id} {asked} {key.request}"


def claim_idempotency_key(
    backend: JobBackend, key: Idempotency, job_id: str, asked: str = "", state: Literal["pending", "made"] = "made"
) -> str | None:
    """Claim the key for a job (SET NX: one request wins), or return the job an earlier request with
    this key made. A job about to be made claims it "pending"; a replay's job, made already, "made"
    (its path says all it asks for)."""
    name = idempotency_key_name(backend, key)
    lifetime = PENDING_CLAIM_SECONDS if state == "pending" else MADE_CLAIM_SECONDS
    deadline = time.monotonic() + WAIT_FOR_PENDING_SECONDS
    while True:
        with redis_errors_as_503(settings.redis_url):
            if idempotency_store.set(name, claim_value(state, job_id, asked, key), nx=True, px=round(lifetime * 1000)):
                return None
        earlier = made_job(backend, key, asked, deadline)
        if earlier is not None:
            return earlier
        # The claim was given up (its job was not made), or it expired: claim the key again.


def complete_claim(backend: JobBackend, key: Idempotency, job_id: str, asked: str, made: bool) -> None:
    """Point the key at its job once the job is made, or free the key if it was not made.

    A key left pending (Redis does not answer) expires by itself: the client's retry then makes the job.
    """
    name, pending = idempotency_key_name(backend, key), claim_value("pending", job_id, asked, key)
    with suppress(RedisTrouble), redis_errors_as_503(settings.redis_url):
        if not made:
            idempotency_store.eval(RELEASE_CLAIM, 1, name, pending)
            return
        made_claim = claim_value("made", job_id, asked, key)
        if not idempotency_store.eval(MAKE_CLAIM, 1, name, pending, made_claim, round(MADE_CLAIM_SECONDS * 1000)):
            logger.warning("The Idempotency-Key's claim expired before its job %s was made: Redis is slow.", job_id)


def earlier_job(backend: JobBackend, key: Idempotency) -> str | None:
    """The job an earlier request with this key made, if any (without claiming the key)."""
    return made_job(backend, key, None, time.monotonic() + WAIT_FOR_PENDING_SECONDS)


def made_job(backend: JobBackend, key: Idempotency, asked: str | None, deadline: float) -> str | None:
    """The job the key points at, waiting until the deadline for a pending one (then 409); None if
    the key is free. A key claimed by another request is 422.

    asked: None for a replay, which asks before its job is known (its path names the dead letter).
    """
    name = idempotency_key_name(backend, key)
    while True:
        with redis_errors_as_503(settings.redis_url):
            earlier = idempotency_store.get(name)
            if earlier is None:
                return None
            state, job_id, earlier_asked, earlier_request = earlier.decode().split(" ", 3)
            if earlier_request != key.request or asked not in (None, earlier_asked):
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
                retry_after = max(1, math.ceil(idempotency_store.pttl(name) / 1000))
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    "A request with this Idempotency-Key is still being processed: try again later.",
                    headers={"Retry-After": str(retry_after)},
                )
        time.sleep(0.05)


def cannot_run(job_id: str, task: str) -> HTTPException:
    """A 409 for a dead letter whose replay cannot run here (the backend keeps the letter)."""
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
def redis_errors_as_503(
    url: str | None, *library_errors: type[Exception], timeout_seconds: float = settings.redis_timeout_seconds
) -> Iterator[None]:
    """Turn a failed Redis call into a 503 that says what went wrong, and log the cause.

    ``library_errors``: a library's own wrappers of Redis errors (kombu's OperationalError);
    their cause is the Redis error.
    """
    try:
        yield
    except (RedisError, *library_errors) as error:
        where = f"The job queue (Redis at {without_password(url or '')})"
        cause = error if isinstance(error, RedisError) else (error.__cause__ or error.__context__ or error)
        timed_out = isinstance(cause, RedisTimeoutError | TimeoutError)
        if timed_out:
            detail = f"{where} did not answer within {timeout_seconds:g} s: try again later."
        elif isinstance(cause, RedisConnectionError | OSError) and not isinstance(cause, AuthenticationError):
            detail = f"{where} is not reachable: is Redis running there, and is REDIS_URL right?"
        else:
            detail = f"{where} answered with an error: {error}"
        logger.warning("%s The cause: %s: %s", detail, type(cause).__name__, cause)
        raise RedisTrouble(detail, timed_out) from error


def without_password(url: str) -> str:
    """The URL fit for a message or a log: its password masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":**@", 1)
