"""Stage 5: monitored multi-queue Celery: queues, priorities, rate limits, Flower, Prometheus, JSON logs."""

# `celery -A stage5_monitoring worker` looks in this package for the Celery app: here it is.
from .celery_app import celery_app

__all__ = ["celery_app"]
