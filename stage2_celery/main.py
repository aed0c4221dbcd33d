"""The FastAPI app: answer at once, and hand the slow work to a Celery worker.

Run it from the repository root: uvicorn stage2_celery.main:app
The jobs run in a worker:        celery -A stage2_celery worker --loglevel=INFO
"""

from typing import Annotated, Literal
from uuid import UUID

from fastapi import FastAPI, Path, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, FiniteFloat

# Part of the stage2_celery package; in a flat project: from jobs import ...
from .config import settings
from .hardening import bad_input_is_422, redis_errors_as_503
from .jobs import JobAccepted, JobStatus, enqueue, job_status
from .tasks import add, generate_report, send_welcome_email
from .workers import broker_redis, workers_per_queue

app = FastAPI(title="Stage 2: Celery")
# NaN or Infinity in a body: a 422 naming the field, not a 500 (hardening.py).
app.add_exception_handler(RequestValidationError, bad_input_is_422)


class AddRequest(BaseModel):
    x: int
    y: int


class ReportRequest(BaseModel):
    # Finite numbers only: a NaN row makes a NaN sum, which JSON has not (the answer would say null).
    rows: list[FiniteFloat] = Field(min_length=1, max_length=10_000, examples=[[3, 1, 4, 1, 5]])


class Health(BaseModel):
    status: Literal["ok", "degraded"]  # degraded: a queue has no worker, and its jobs wait
    redis: Literal["ok"]
    workers: dict[str, int]  # per queue


UserId = Annotated[int, Path(gt=0, description="A positive user id")]


# 202 Accepted, not 200: the work is accepted now and done later, by a worker.
@app.post("/users/{user_id}/welcome", status_code=status.HTTP_202_ACCEPTED)
def welcome_user(user_id: UserId, response: Response) -> JobAccepted:
    email = f"user{user_id}@example.com"
    # The job goes to Redis; a worker sends the e-mail. The client gets an id to ask about it.
    return enqueue(send_welcome_email, [user_id, email], response)


@app.post("/jobs/add", status_code=status.HTTP_202_ACCEPTED)
def enqueue_add(request: AddRequest, response: Response) -> JobAccepted:
    return enqueue(add, [request.x, request.y], response)


@app.post("/jobs/report", status_code=status.HTTP_202_ACCEPTED)
def enqueue_report(request: ReportRequest, response: Response) -> JobAccepted:
    return enqueue(generate_report, [request.rows], response)


# A job id is a UUID: anything else is answered 422, naming job_id, and never reaches Redis.
@app.get("/jobs/{job_id}", response_model_exclude_none=True)
def get_job(job_id: UUID) -> JobStatus:
    return job_status(str(job_id))


# Its own client: /health waits HEALTH_TIMEOUT_SECONDS for Redis at most, not REDIS_TIMEOUT_SECONDS.
health_redis = broker_redis(settings.health_timeout_seconds)


@app.get("/health", responses={503: {"description": "Redis does not answer"}})
def health() -> Health:
    """Does Redis answer, and how many workers consume each queue? Within HEALTH_TIMEOUT_SECONDS, always."""
    with redis_errors_as_503(settings.redis_url, settings.health_timeout_seconds):
        workers = workers_per_queue(health_redis)
    # 200 also without a worker: the API still takes jobs, which wait.
    return Health(status="ok" if all(workers.values()) else "degraded", redis="ok", workers=workers)
