"""Hardening that a first reading can skip: Redis URLs, Redis errors as 503s, Idempotency-Key claims.

The lesson works without it on a local Redis. What it adds: celery_app.py's URLs for a unix
socket (`celery_redis_url`) and for TLS (`tls_options`), and `redis_errors_as_503`, which turns
a Redis that is down, slow or misconfigured into a 503 that says which, never a hang; and
`bad_input_is_422`, which keeps a NaN in a request body a 422 naming the field (main.py).
New in stage 3: `RedisTrouble` (did Redis time out?), and how jobs.py claims an Idempotency-Key:
pending first, then pointing at its job (compare-and-set scripts), a twin request waiting for it.
"""

import hashlib
import json
import logging
import math
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from celery.backends.redis import RedisBackend
from fastapi import HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Part of the stage3_retries package; in a flat project: from config import settings
from .config import settings

logger = logging.getLogger(__name__)


def celery_redis_url(url: str) -> str:
    """The URL as Celery and kombu spell it: they take redis:// and rediss:// as they are,
    but a unix socket as redis+socket:///path?virtual_host=<db> (redis-py: unix:///path?db=<db>)."""
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    query = [("virtual_host" if name == "db" else name, value) for name, value in parse_qsl(parts.query)]
    return f"redis+socket://{parts.path}" + (f"?{urlencode(query)}" if query else "")


def tls_options(url: str) -> dict[str, object] | None:
    """rediss:// means TLS; Celery insists on being told how to check the server's certificate."""
    if urlsplit(url).scheme != "rediss" or "ssl_cert_reqs" in url:
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


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


def celery_results() -> RedisBackend:
    """Celery's result backend, whose Redis keeps the claims. Imported here, when first needed:
    celery_app.py imports this module (for its URLs) before it makes the app."""
    from .celery_app import celery_app

    return celery_app.backend


def idempotency_key_name(idempotency: Idempotency) -> str:
    # Stage 3's own keys: another stage on the same Redis never answers with stage 3's jobs.
    return f"idempotency-key:stage3:{hashlib.sha256(idempotency.key.encode()).hexdigest()}"


def claim_value(state: Literal["pending", "made"], job_id: str, asked: str, idempotency: Idempotency) -> str:
    """A claim as Redis keeps it: "pending <job id> <what it asks for> POST /jobs/add"."""
    return f"{state} {job_id} {asked} {idempotency.request}"


def claim_idempotency_key(idempotency: Idempotency, job_id: str, asked: str) -> str | None:
    """Claim the key for a job about to be made (SET NX: one request wins), or return the job an
    earlier request with this key made."""
    name = idempotency_key_name(idempotency)
    deadline = time.monotonic() + WAIT_FOR_PENDING_SECONDS
    while True:
        with redis_errors_as_503(celery_results().url):
            pending = claim_value("pending", job_id, asked, idempotency)
            if celery_results().client.set(name, pending, nx=True, px=round(PENDING_CLAIM_SECONDS * 1000)):
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
    with suppress(RedisTrouble), redis_errors_as_503(celery_results().url):
        client = celery_results().client
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
        with redis_errors_as_503(celery_results().url):
            earlier = celery_results().client.get(name)
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
                retry_after = max(1, math.ceil(celery_results().client.pttl(name) / 1000))
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    "A request with this Idempotency-Key is still being processed: try again later.",
                    headers={"Retry-After": str(retry_after)},
                )
        time.sleep(0.05)


async def bad_input_is_422(request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's own 422, naming each field, less an echoed input that JSON cannot carry.

    Python's JSON parser takes NaN and Infinity, which JSON has not: echoed back, they made
    FastAPI's own handler fail (a 500).
    """
    errors = jsonable_encoder(error.errors())
    for each in errors:
        try:
            json.dumps(each, allow_nan=False)
        except ValueError:
            del each["input"]
    return JSONResponse({"detail": errors}, status.HTTP_422_UNPROCESSABLE_CONTENT)
