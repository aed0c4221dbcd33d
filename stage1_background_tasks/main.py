"""The FastAPI app: answer at once, then do the slow work with BackgroundTasks.

Run it from the repository root: uvicorn stage1_background_tasks.main:app
"""

import json
from typing import Annotated, Literal

from fastapi import BackgroundTasks, FastAPI, Path, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue

# Part of the stage1_background_tasks package; in a flat project: from tasks import (...)
from .tasks import (
    deliver_event,
    deliver_event_blocking_the_loop,
    deliver_event_sync,
    send_welcome_email,
    write_audit_log,
)

app = FastAPI(title="Stage 1: BackgroundTasks")


@app.exception_handler(RequestValidationError)
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


class Event(BaseModel):
    # Any JSON object, but no NaN or Infinity in it: an event with one could never be sent.
    model_config = ConfigDict(allow_inf_nan=False)
    type: str = Field(pattern=r"^[a-z][a-z0-9_.]*$", max_length=64, examples=["user.created"])
    payload: dict[str, JsonValue] = Field(default_factory=dict)


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    detail: str


UserId = Annotated[int, Path(gt=0, description="A positive user id")]


# 202 Accepted, not 200: the work is accepted now and done after the response.
@app.post("/users/{user_id}/welcome", status_code=status.HTTP_202_ACCEPTED)
def welcome_user(user_id: UserId, background_tasks: BackgroundTasks) -> Accepted:
    email = f"user{user_id}@example.com"
    # Tasks run one after the other, in this order, after the response is sent.
    background_tasks.add_task(send_welcome_email, user_id, email)
    background_tasks.add_task(write_audit_log, "welcome_email_sent", user_id=user_id, email=email)
    return Accepted(detail=f"a welcome e-mail to {email} will be sent")


@app.post("/events", status_code=status.HTTP_202_ACCEPTED)
def publish_event(event: Event, background_tasks: BackgroundTasks) -> Accepted:
    background_tasks.add_task(deliver_event, event.model_dump())
    background_tasks.add_task(write_audit_log, "event_delivered", event_type=event.type)
    return Accepted(detail=f"event {event.type} will be delivered")


@app.post("/events/threaded", status_code=status.HTTP_202_ACCEPTED)
def publish_event_threaded(event: Event, background_tasks: BackgroundTasks) -> Accepted:
    background_tasks.add_task(deliver_event_sync, event.model_dump())
    return Accepted(detail=f"event {event.type} will be delivered from a worker thread")


# Do not copy this one: it shows how an async task with a blocking call stalls the server.
@app.post("/events/blocking", status_code=status.HTTP_202_ACCEPTED)
def publish_event_blocking(event: Event, background_tasks: BackgroundTasks) -> Accepted:
    background_tasks.add_task(deliver_event_blocking_the_loop, event.model_dump())
    return Accepted(detail=f"event {event.type} will be delivered, blocking the event loop meanwhile")


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
