"""Stage 3: Celery that survives failure: retries, dead letters, idempotency, a worker killed mid-job."""

# `celery -A stage4_rq_dramatiq worker` looks in this package for the Celery app: here it is.
from .celery_app import celery_app

__all__ = ["celery_app"]
