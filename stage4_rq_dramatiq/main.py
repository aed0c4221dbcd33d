"""The FastAPI app: the job API of stage 3, once per library, and the thumbnails they make.

Run it from the repository root: uvicorn stage4_rq_dramatiq.main:app
Then one worker per library (see the Procfile):
  celery -A stage4_rq_dramatiq.celery_app worker --loglevel=INFO
  rq worker --with-scheduler --url $REDIS_URL --serializer rq.serializers.JSONSerializer default
  dramatiq stage4_rq_dramatiq.dramatiq_actors
"""

from fastapi import FastAPI

# Part of the stage4_rq_dramatiq package; in a flat project: from api import job_api
from . import uploads
from .api import job_api
from .dramatiq_jobs import DramatiqJobs
from .jobs import CeleryJobs
from .rq_jobs import RqJobs

app = FastAPI(title="Stage 4: Celery, RQ and Dramatiq side by side")

# The same routes three times: /celery/jobs/add, /rq/jobs/add, /dramatiq/jobs/add, ...
for backend in (CeleryJobs(), RqJobs(), DramatiqJobs()):
    app.include_router(job_api(backend))
app.include_router(uploads.router)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
