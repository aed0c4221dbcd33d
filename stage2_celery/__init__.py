"""Stage 2: Celery with Redis, a worker process, and a job API that tells the truth."""

# `celery -A stage2_celery worker` looks in this package for the Celery app: here it is.
from .celery_app import celery_app

__all__ = ["celery_app"]
