"""The Celery app: the broker where jobs wait, and the result backend where their states are kept.

A worker finds it by its module: celery -A stage2_celery.celery_app worker --loglevel=INFO
(Celery looks in that module for the Celery instance, here `celery_app`.)
"""

from celery import Celery

from .config import settings

celery_app = Celery(
    "stage2_celery",
    broker=settings.redis_url,
    backend=settings.result_backend_url,
    # The modules a worker imports to learn the tasks; without it: "Received unregistered task".
    include=["stage2_celery.tasks"],
)

celery_app.conf.update(
    # JSON only: arguments and results must be plain data, and no worker ever unpickles a message.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Record STARTED when a worker takes a job; without it, a running job still says PENDING.
    task_track_started=True,
    # Forget results after this long (Celery's default is one day).
    result_expires=settings.result_expires_seconds,
    # A worker started before Redis keeps trying to connect (and Celery 5 stops warning about it).
    broker_connection_retry_on_startup=True,
    # Give up on an unreachable Redis after this long, so the API can answer 503 instead of hanging.
    broker_connection_timeout=settings.enqueue_timeout_seconds,
    redis_socket_connect_timeout=settings.enqueue_timeout_seconds,
)
