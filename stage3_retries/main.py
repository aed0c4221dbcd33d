"""The FastAPI app: answer at once, and hand the slow work to a Celery worker.

Run it from the repository root: uvicorn stage3_retries.main:app
The jobs run in a worker:        celery -A stage3_retries worker --loglevel=INFO
The digest is sent by:           celery -A stage3_retries beat --loglevel=INFO
"""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, JsonValue

# Part of the stage3_retries package; in a flat project: from jobs import ...
from .celery_app import celery_app
from .config import settings
from .dead_letters import list_dead_letters, put_back_dead_letter, take_dead_letter
from .hardening import Idempotency, bad_input_is_422, earlier_job, redis_errors_as_503
from .jobs import JobAccepted, JobStatus, accepted, cannot_run, enqueue, idempotency, job_status
from .tasks import add, deliver_webhook, generate_report, send_welcome_email
from .workers import broker_redis, workers_per_queue

app = FastAPI(title="Stage 3: Celery that survives failure")
# NaN or Infinity in a body: a 422 naming the field, not a 500 (hardening.py).
app.add_exception_handler(RequestValidationError, bad_input_is_422)


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
@app.post("/users/{user_id}/welcome", status_code=status.HTTP_202_ACCEPTED)
def welcome_user(user_id: UserId, response: Response, idempotency: IdempotencyKey) -> JobAccepted:
    email = f"user{user_id}@example.com"
    # The job goes to Redis; a worker sends the e-mail. The client gets an id to ask about it.
    return enqueue(send_welcome_email, [user_id, email], response, idempotency)


@app.post("/events", status_code=status.HTTP_202_ACCEPTED)
def publish_event(event: Event, response: Response, idempotency: IdempotencyKey) -> JobAccepted:
    return enqueue(deliver_webhook, [event.model_dump()], response, idempotency)


@app.post("/jobs/add", status_code=status.HTTP_202_ACCEPTED)
def enqueue_add(request: AddRequest, response: Response, idempotency: IdempotencyKey) -> JobAccepted:
    return enqueue(add, [request.x, request.y], response, idempotency, delay_seconds=request.delay_seconds)


@app.post("/jobs/report", status_code=status.HTTP_202_ACCEPTED)
def enqueue_report(request: ReportRequest, response: Response, idempotency: IdempotencyKey) -> JobAccepted:
    return enqueue(generate_report, [request.rows, request.stop_at_soft_limit], response, idempotency)


# A job id is a UUID: anything else is answered 422, naming job_id, and never reaches Redis.
@app.get("/jobs/{job_id}", response_model_exclude_none=True)
def get_job(job_id: UUID) -> JobStatus:
    return job_status(str(job_id))


@app.get("/dead-letters")
def get_dead_letters(limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[DeadLetter]:
    """The jobs that failed for good, newest first."""
    with redis_errors_as_503(celery_app.backend.url):
        return [DeadLetter(**letter) for letter in list_dead_letters(limit)]


@app.post("/dead-letters/{job_id}/replay", status_code=status.HTTP_202_ACCEPTED)
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


@app.delete("/dead-letters/{job_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dead_letter(job_id: UUID) -> None:
    with redis_errors_as_503(celery_app.backend.url):
        letter = take_dead_letter(str(job_id))
    if letter is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No dead letter {job_id}.")


# Its own client: /health waits HEALTH_TIMEOUT_SECONDS for Redis at most, not REDIS_TIMEOUT_SECONDS.
health_redis = broker_redis(settings.health_timeout_seconds)


@app.get("/health", responses={503: {"description": "Redis does not answer"}})
def health() -> Health:
    """Does Redis answer, and how many workers consume each queue? Within HEALTH_TIMEOUT_SECONDS, always."""
    with redis_errors_as_503(settings.redis_url, settings.health_timeout_seconds):
        workers = workers_per_queue(health_redis)
    # 200 also without a worker: the API still takes jobs, which wait.
    return Health(status="ok" if all(workers.values()) else "degraded", redis="ok", workers=workers)
