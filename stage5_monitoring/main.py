"""The FastAPI app: answer at once, and hand the slow work to a Celery worker.

Run it from the repository root: uvicorn stage5_monitoring.main:app
Every process of the stage, workers, beat and Flower included: stage5_monitoring/Procfile
"""

from functools import partial
from typing import Annotated, Any, Literal
from uuid import UUID

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, JsonValue

# Part of the stage5_monitoring package; in a flat project: from jobs import ...
from .celery_app import PRIORITIES, celery_app
from .config import settings
from .dead_letters import list_dead_letters, put_back_dead_letter, take_dead_letter
from .hardening import Idempotency, bad_input_is_422, earlier_job, redis_errors_as_503
from .jobs import JobAccepted, JobStatus, accepted, cannot_run, enqueue, idempotency, job_status
from .logs import REQUEST_ID_HEADER, configure_json_logging, is_valid_request_id
from .metrics import instrument
from .tasks import add, deliver_webhook, generate_report, make_thumbnail, send_welcome_email
from .uploads import UPLOAD_FORM_OPENAPI, StoredImage, enqueue_upload
from .uploads import router as uploads_router
from .workers import broker_redis, workers_per_queue

configure_json_logging(settings.log_level)
app = FastAPI(title="Stage 5: monitored multi-queue Celery")
# NaN or Infinity in a body: a 422 naming the field, not a 500 (hardening.py).
app.add_exception_handler(RequestValidationError, bad_input_is_422)


@app.exception_handler(status.HTTP_404_NOT_FOUND)
async def unknown_route_says_where_the_routes_are(request: Request, error: HTTPException) -> JSONResponse:
    """Stage 4's /celery/jobs/add, asked of stage 5: a 404 that says where the routes are now."""
    detail, path = error.detail, request.url.path
    # Not Found: no route has this path (a route's own 404 says more); under a route's own prefix, it stays as it is.
    if detail == "Not Found" and not path.startswith(("/jobs/", "/dead-letters/", "/thumbnails/")):
        routes = "/jobs/..., /dead-letters, /thumbnails, /health and /metrics"
        detail = f"No route {path} in stage 5: its routes are {routes}"
        for library in ("/celery/", "/rq/", "/dramatiq/"):
            if path.startswith(library):  # a stage 4 route: the job API is back at /jobs/...
                detail += f" (stage 4's {path} is /{path.removeprefix(library)} here)"
        detail += "; see /docs."
    return JSONResponse({"detail": detail}, status.HTTP_404_NOT_FOUND, headers=getattr(error, "headers", None))


instrument(app)
# The request id of X-Request-ID (or a new one) for the log lines and the jobs of each request, and in the answer.
app.add_middleware(CorrelationIdMiddleware, header_name=REQUEST_ID_HEADER, validator=is_valid_request_id)
# Stage 4's Celery routes, back where stage 3 had them (/jobs/...): Celery is the one library now.
router = APIRouter()


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
    # False shows a task that swallows its soft time limit: the hard limit then kills it.
    stop_at_soft_limit: bool = True
    # A high one is taken before the normal and low ones that wait in the queue.
    priority: Literal["high", "normal", "low"] = "normal"


class Health(BaseModel):
    status: Literal["ok", "degraded"]  # degraded: a queue has no worker, and its jobs wait
    redis: Literal["ok"]
    workers: dict[str, int]  # per queue


class DeadLetter(BaseModel):
    job_id: str
    task: str
    args: list[Any]
    error: str
    attempts: int
    failed_at: str


UserId = Annotated[int, Path(gt=0, description="A positive user id")]
IdempotencyKey = Annotated[Idempotency | None, Depends(idempotency)]


# 202 Accepted, not 200: the work is accepted now and done later, by a worker.
@router.post("/users/{user_id}/welcome", status_code=status.HTTP_202_ACCEPTED)
def welcome_user(user_id: UserId, response: Response, idempotency: IdempotencyKey) -> JobAccepted:
    email = f"user{user_id}@example.com"
    # The job goes to Redis; a worker sends the e-mail. The client gets an id to ask about it.
    return enqueue(send_welcome_email, [user_id, email], response, idempotency)


@router.post("/events", status_code=status.HTTP_202_ACCEPTED)
def publish_event(event: Event, response: Response, idempotency: IdempotencyKey) -> JobAccepted:
    return enqueue(deliver_webhook, [event.model_dump()], response, idempotency)


@router.post("/jobs/add", status_code=status.HTTP_202_ACCEPTED)
def enqueue_add(request: AddRequest, response: Response, idempotency: IdempotencyKey) -> JobAccepted:
    return enqueue(add, [request.x, request.y], response, idempotency, delay_seconds=request.delay_seconds)


@router.post("/jobs/report", status_code=status.HTTP_202_ACCEPTED)
def enqueue_report(request: ReportRequest, response: Response, idempotency: IdempotencyKey) -> JobAccepted:
    args = [request.rows, request.stop_at_soft_limit]
    return enqueue(generate_report, args, response, idempotency, priority=PRIORITIES[request.priority])


# A job id is a UUID: anything else is answered 422, naming job_id, and never reaches Redis.
@router.get("/jobs/{job_id}", response_model_exclude_none=True)
def get_job(job_id: UUID) -> JobStatus:
    return job_status(str(job_id))


# The message carries the stored file's name, never its bytes (see uploads.py).
@router.post("/thumbnails", status_code=status.HTTP_202_ACCEPTED, openapi_extra=UPLOAD_FORM_OPENAPI)
def enqueue_thumbnail(stored_name: StoredImage, response: Response, idempotency: IdempotencyKey) -> JobAccepted:
    enqueue_it = partial(enqueue, make_thumbnail, [stored_name], response, idempotency)
    return enqueue_upload(stored_name, idempotency, enqueue_it)


@router.get("/dead-letters")
def get_dead_letters(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[DeadLetter]:
    """The jobs that failed for good, newest first."""
    with redis_errors_as_503(celery_app.backend.url):
        return [DeadLetter(**letter) for letter in list_dead_letters(limit)]


@router.post("/dead-letters/{job_id}/replay", status_code=status.HTTP_202_ACCEPTED)
def replay_dead_letter(job_id: UUID, response: Response, idempotency: IdempotencyKey) -> JobAccepted:
    """Enqueue the same work again, as a new job; the dead letter is gone (a second replay is 404).

    With an Idempotency-Key, a repeated replay answers the job the first one made.
    """
    if idempotency is not None and (earlier := earlier_job(idempotency)) is not None:
        return accepted(earlier, response)
    with redis_errors_as_503(celery_app.backend.url):
        letter = take_dead_letter(str(job_id))
    if letter is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No dead letter {job_id}.")
    try:
        task = celery_app.tasks.get(letter["task"])
        if task is None:
            raise cannot_run(str(job_id), letter["task"])
        return enqueue(task, letter["args"], response, idempotency)
    except Exception:
        # Nothing is lost, whatever went wrong (a task this app does not have, Redis refused the
        # job, the key was used meanwhile for another request): the letter waits for the next replay.
        with redis_errors_as_503(celery_app.backend.url):
            put_back_dead_letter(letter)
        raise


@router.delete("/dead-letters/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dead_letter(job_id: UUID) -> None:
    with redis_errors_as_503(celery_app.backend.url):
        letter = take_dead_letter(str(job_id))
    if letter is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No dead letter {job_id}.")


app.include_router(router)
app.include_router(uploads_router)


# Its own client: /health waits HEALTH_TIMEOUT_SECONDS for Redis at most, not REDIS_TIMEOUT_SECONDS.
health_redis = broker_redis(settings.health_timeout_seconds)


@app.get("/health", responses={503: {"description": "Redis does not answer"}})
def health() -> Health:
    """Does Redis answer, and how many workers consume each queue? Within HEALTH_TIMEOUT_SECONDS, always."""
    with redis_errors_as_503(settings.redis_url, settings.health_timeout_seconds):
        workers = workers_per_queue(health_redis)
    # 200 also without a worker: the API still takes jobs, which wait (the alert rules say so).
    return Health(status="ok" if all(workers.values()) else "degraded", redis="ok", workers=workers)
