"""The Celery app: the broker where jobs wait, and the result backend where their states are kept.

A worker finds it through the package (see __init__.py): celery -A stage2_celery worker --loglevel=INFO
"""

from celery import Celery

# Part of the stage2_celery package; in a flat project: from config import settings
from .config import settings
from .hardening import celery_redis_url, tls_options

broker_url = celery_redis_url(settings.redis_url)
result_backend_url = celery_redis_url(settings.result_backend_url or settings.redis_url)

celery_app = Celery(
    "stage2_celery",
    broker=broker_url,
    backend=result_backend_url,
    # The modules a worker imports to learn the tasks (and to note its queues in Redis); without
    # it: "Received unregistered task". In a flat project (these files copied side by side):
    # include=["tasks", "workers"].
    include=["stage2_celery.tasks", "stage2_celery.workers"],
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
    # Every Redis call of the API gets a deadline, so it can answer 503 instead of hanging:
    # connecting and publishing to the broker...
    broker_connection_timeout=settings.redis_timeout_seconds,
    broker_transport_options={
        "socket_connect_timeout": settings.redis_timeout_seconds,
        "socket_timeout": settings.redis_timeout_seconds,
        # Publishing connects without retrying (the worker's reconnecting has settings of its own).
        "max_retries": 0,
    },
    # ...and reading or writing a state in the result backend (Celery's default waits 120 s).
    redis_socket_connect_timeout=settings.redis_timeout_seconds,
    redis_socket_timeout=settings.redis_timeout_seconds,
    broker_use_ssl=tls_options(broker_url),
    redis_backend_use_ssl=tls_options(result_backend_url),
)
