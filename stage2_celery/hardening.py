"""Hardening that a first reading can skip: Redis URLs as Celery spells them, and Redis errors as 503s.

The lesson works without it on a local Redis. What it adds: celery_app.py's URLs for a unix
socket (`celery_redis_url`) and for TLS (`tls_options`), and `redis_errors_as_503`, which turns
a Redis that is down, slow or misconfigured into a 503 that says which, never a hang; and
`bad_input_is_422`, which keeps a NaN in a request body a 422 naming the field (main.py).
"""

import json
import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Part of the stage2_celery package; in a flat project: from config import settings
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


@contextmanager
def redis_errors_as_503(url: str | None, timeout_seconds: float = settings.redis_timeout_seconds) -> Iterator[None]:
    """Turn a failed Redis call into a 503 that says what went wrong, and log the cause."""
    try:
        yield
    except (RedisError, OperationalError) as error:
        where = f"The job queue (Redis at {maybe_sanitize_url(url or '')})"
        # kombu wraps the broker's connection errors in its own OperationalError.
        cause = (error.__cause__ or error.__context__) if isinstance(error, OperationalError) else error
        if isinstance(cause, RedisTimeoutError | TimeoutError):
            detail = f"{where} did not answer within {timeout_seconds:g} s: try again later."
        elif isinstance(cause, RedisConnectionError | OSError) and not isinstance(cause, AuthenticationError):
            detail = f"{where} is not reachable: is Redis running there, and is REDIS_URL right?"
        else:
            detail = f"{where} answered with an error: {error}"
        logger.warning("%s The cause: %s: %s", detail, type(cause).__name__, cause)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail) from error


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
