"""JSON log lines, and a request id that follows a job from the API into the worker.

The API takes the request id from the X-Request-ID header (or makes one) and sends it
back in the response (asgi-correlation-id's middleware, see main.py). Each job it
publishes carries the id in a message header; the worker puts it back in place while
the job runs. So one id finds the request's lines in the API's log and the job's lines
in the worker's, where they also name the job: task_id, task, queue and attempt.
"""

import logging
import re
import sys
from contextvars import Token
from typing import Any

from asgi_correlation_id import correlation_id
from celery import Task, current_task
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
# Any visible ASCII up to 128 characters is taken as given: a load balancer's or a client's own id.
# (asgi-correlation-id's default check takes UUIDs only, and silently replaces anything else.)
VALID_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def is_valid_request_id(value: str) -> bool:
    return VALID_REQUEST_ID.fullmatch(value) is not None


class JobFields(logging.Filter):
    """Add request_id to every line, and, in a worker running a job, what job it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = correlation_id.get()
        request = current_task.request if current_task else None
        if request is not None and request.id:
            record.task_id = request.id
            record.task = current_task.name
            record.queue = (request.delivery_info or {}).get("routing_key")
            record.attempt = getattr(request, "attempt", None)
        return True


def configure_json_logging(level: int | str) -> None:
    """One JSON object per line on stderr, for this process's loggers (uvicorn's and Celery's included)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            # Left out: the copy of a message with terminal colours that uvicorn adds, and the
            # data Celery adds to its own lines (a job's arguments: too long, and maybe personal).
            reserved_attrs=[*RESERVED_ATTRS, "color_message", "data"],
        )
    )
    handler.addFilter(JobFields())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # uvicorn gives its loggers handlers of their own: let their lines go through the root's instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


@setup_logging.connect
def worker_logs_in_json(loglevel: int, **_: Any) -> None:
    """Celery configures a worker's logging unless a handler of this signal does: this one does."""
    configure_json_logging(loglevel or logging.INFO)


@before_task_publish.connect
def send_request_id(headers: dict[str, Any], **_: Any) -> None:
    """Publish each job with the request id of the request (or of the job) that publishes it."""
    request_id = correlation_id.get()
    if request_id is not None:
        headers["request_id"] = request_id


# The request id of the job that runs in this process, to put the previous one back afterwards.
_restore: dict[str, Token[str | None]] = {}


@task_prerun.connect
def receive_request_id(task_id: str, task: Task, **_: Any) -> None:
    """While a job runs, its request id is the current one: for its log lines, and for the jobs it publishes."""
    _restore[task_id] = correlation_id.set(task.request.get("request_id"))


@task_postrun.connect
def forget_request_id(task_id: str, **_: Any) -> None:
    token = _restore.pop(task_id, None)
    if token is not None:
        correlation_id.reset(token)
