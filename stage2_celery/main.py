"""The FastAPI app: hand the slow work to Celery, and tell the truth about every job.

Run it from the repository root: uvicorn stage2_celery.main:app
The jobs run in a worker:        celery -A stage2_celery.celery_app worker --loglevel=INFO
"""

from contextlib import suppress
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from celery import Task
from fastapi import FastAPI, HTTPException, Path, Response, status
from kombu.exceptions import OperationalError
from kombu.utils.url import maybe_sanitize_url
from pydantic import BaseModel, Field
from redis import Redis, RedisError

from .celery_app import celery_app
from .config import settings
from .tasks import add, generate_report, send_welcome_email

app = FastAPI(title="Stage 2: Celery")

# Marks of issued jobs (see enqueue), kept next to the results and expiring with them.
job_marks = Redis.from_url(
    settings.result_backend_url,
    socket_connect_timeout=settings.enqueue_timeout_seconds,
    socket_timeout=settings.enqueue_timeout_seconds,
)

REDIS_UNREACHABLE = (
    f"The job queue (Redis at {maybe_sanitize_url(settings.redis_url)}) is not reachable: "
    "start it with `make services` or set REDIS_URL."
)


class AddRequest(BaseModel):
    x: int
    y: int


class ReportRequest(BaseModel):
    rows: list[float] = Field(min_length=1, max_length=10_000, examples=[[3, 1, 4, 1, 5]])


class JobAccepted(BaseModel):
    job_id: str
    status_url: str


class Progress(BaseModel):
    current: int
    total: int


JobState = Literal["queued", "started", "progress", "retrying", "succeeded", "failed"]


class JobStatus(BaseModel):
    job_id: str
    status: JobState
    backend_status: str  # Celery's own name for the state: PENDING, STARTED, SUCCESS, ...
    result: Any = None
    error: str | None = None
    progress: Progress | None = None


# Celery's states, in the words of the job API.
STATUS_OF_CELERY_STATE: dict[str, JobState] = {
    "PENDING": "queued",  # or never issued: Celery cannot tell, the job mark can
    "STARTED": "started",  # only with task_track_started
    "PROGRESS": "progress",  # the custom state of generate_report
    "RETRY": "retrying",
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    "REVOKED": "failed",
}

UserId = Annotated[int, Path(gt=0, description="A positive user id")]


def job_mark_key(job_id: str) -> str:
    return f"job:{job_id}"


def enqueue(task: Task, args: list[Any], response: Response) -> JobAccepted:
    """Mark a new job as issued, publish it, and say where to watch it.

    Celery answers PENDING for any id, even one it never saw, so GET /jobs/{id} needs
    the mark to tell "queued" from "never issued" (404). The mark comes first: if the
    publish fails, the client gets a 503 and never learns the id, so a leftover mark
    is harmless; the other order could run a job whose client was told it failed.
    """
    job_id = str(uuid4())
    try:
        job_marks.set(job_mark_key(job_id), task.name, ex=settings.result_expires_seconds)
        # retry=False: with the broker gone, fail now rather than retry while the client waits.
        task.apply_async(args, task_id=job_id, retry=False)
    except (RedisError, OperationalError):
        with suppress(RedisError):
            job_marks.delete(job_mark_key(job_id))
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, REDIS_UNREACHABLE) from None
    status_url = f"/jobs/{job_id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job_id, status_url=status_url)


# 202 Accepted, not 200 or 201: the job is accepted now and done later, by a worker.
@app.post("/jobs/add", status_code=status.HTTP_202_ACCEPTED)
def enqueue_add(request: AddRequest, response: Response) -> JobAccepted:
    return enqueue(add, [request.x, request.y], response)


@app.post("/jobs/report", status_code=status.HTTP_202_ACCEPTED)
def enqueue_report(request: ReportRequest, response: Response) -> JobAccepted:
    return enqueue(generate_report, [request.rows], response)


@app.post("/users/{user_id}/welcome", status_code=status.HTTP_202_ACCEPTED)
def welcome_user(user_id: UserId, response: Response) -> JobAccepted:
    email = f"user{user_id}@example.com"
    return enqueue(send_welcome_email, [user_id, email], response)


# A job id is a UUID: anything else is answered 422, naming job_id, and never reaches Redis.
@app.get("/jobs/{job_id}", response_model_exclude_none=True)
def job_status(job_id: UUID) -> JobStatus:
    try:
        # One read, so the state and its data (result, error or progress) belong together.
        meta = celery_app.backend.get_task_meta(str(job_id))
        issued = meta["status"] != "PENDING" or job_marks.exists(job_mark_key(str(job_id)))
    except RedisError:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, REDIS_UNREACHABLE) from None
    if not issued:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"No job {job_id}: it was never issued, or it has expired.")

    state, info = meta["status"], meta["result"]
    # Any other state (a custom one, set by a running task) counts as started; backend_status names it.
    job = JobStatus(job_id=str(job_id), status=STATUS_OF_CELERY_STATE.get(state, "started"), backend_status=state)
    if state == "SUCCESS":
        job.result = info
    elif state == "PROGRESS":
        job.progress = Progress(**info)
    elif isinstance(info, BaseException):
        # Celery rebuilds the task's exception here; the client gets its type and message only.
        job.error = f"{type(info).__name__}: {info}"
    return job


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
