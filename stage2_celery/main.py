"""The FastAPI app: answer at once, and hand the slow work to a Celery worker.

Run it from the repository root: uvicorn stage2_celery.main:app
The jobs run in a worker:        celery -A stage2_celery worker --loglevel=INFO
"""

from typing import Annotated
from uuid import UUID

from fastapi import FastAPI, Path, Response, status
from pydantic import BaseModel, Field

# Part of the stage2_celery package; in a flat project: from jobs import ...
from .jobs import JobAccepted, JobStatus, enqueue, job_status
from .tasks import add, generate_report, send_welcome_email

app = FastAPI(title="Stage 2: Celery")


class AddRequest(BaseModel):
    x: int
    y: int


class ReportRequest(BaseModel):
    rows: list[float] = Field(min_length=1, max_length=10_000, examples=[[3, 1, 4, 1, 5]])


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


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
