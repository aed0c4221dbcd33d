"""The FastAPI app: the job API of stage 3, once per library, and the thumbnails they make.

Run it from the repository root: uvicorn stage4_rq_dramatiq.main:app
Then one worker per library (see the Procfile):
  celery -A stage4_rq_dramatiq.celery_app worker --loglevel=INFO
  rq worker --with-scheduler --url $REDIS_URL --serializer rq.serializers.JSONSerializer default
  dramatiq stage4_rq_dramatiq.dramatiq_actors
"""

import json

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis import Redis

# Part of the stage4_rq_dramatiq package; in a flat project: from api import job_api
from . import uploads
from .api import job_api, redis_errors_as_503
from .config import settings
from .dramatiq_jobs import DramatiqJobs
from .jobs import CeleryJobs
from .rq_jobs import RqJobs

app = FastAPI(title="Stage 4: Celery, RQ and Dramatiq side by side")


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


# The same routes three times: /celery/jobs/add, /rq/jobs/add, /dramatiq/jobs/add, ...
for backend in (CeleryJobs(), RqJobs(), DramatiqJobs()):
    app.include_router(job_api(backend))
app.include_router(uploads.router)


# Its own client: /health waits HEALTH_TIMEOUT_SECONDS for Redis at most, not REDIS_TIMEOUT_SECONDS.
# The three libraries keep their jobs in this one Redis (REDIS_URL).
health_redis = Redis.from_url(
    settings.redis_url,
    socket_connect_timeout=settings.health_timeout_seconds,
    socket_timeout=settings.health_timeout_seconds,
)


@app.get("/health", responses={503: {"description": "Redis does not answer"}})
def health() -> dict[str, str]:
    """Does Redis answer? Within HEALTH_TIMEOUT_SECONDS, always."""
    with redis_errors_as_503(settings.redis_url, timeout_seconds=settings.health_timeout_seconds):
        health_redis.ping()
    return {"status": "ok"}
