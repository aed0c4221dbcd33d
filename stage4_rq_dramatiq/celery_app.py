"""The Celery app: the broker where jobs wait, and the result backend where their states are kept.

A worker finds it by its module:                         celery -A stage4_rq_dramatiq.celery_app worker --loglevel=INFO
The periodic digest needs exactly one beat process:      celery -A stage4_rq_dramatiq.celery_app beat --loglevel=INFO
"""

import logging

import redis
from celery import Celery
from celery.signals import worker_ready

# Part of the stage4_rq_dramatiq package; in a flat project: from config import settings
from .config import settings
from .hardening import celery_redis_url, tls_options

logger = logging.getLogger(__name__)


broker_url = celery_redis_url(settings.redis_url)
result_backend_url = celery_redis_url(settings.result_backend_url or settings.redis_url)


def attempts_key(job_id: str) -> str:
    """Where tasks.count_attempt counts a job's starts, in the results Redis; jobs.py and dead_letters.py read it."""
    return f"job-attempts:{job_id}"


celery_app = Celery(
    "stage4_rq_dramatiq",
    broker=broker_url,
    backend=result_backend_url,
    # The modules a worker imports to learn the tasks (and the dead-letter hook, and the note of
    # its queues); without it: "Received unregistered task".
    # In a flat project (these files copied side by side): include=["tasks", "dead_letters", "workers"],
    # and the task names in beat_schedule below lose the "stage4_rq_dramatiq." prefix.
    include=["stage4_rq_dramatiq.tasks", "stage4_rq_dramatiq.dead_letters", "stage4_rq_dramatiq.workers"],
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
        # A job taken but never acknowledged (its worker was killed) goes back to the queue
        # after this long. It must exceed the longest job and the longest countdown.
        "visibility_timeout": settings.visibility_timeout_seconds,
        # How often a worker looks for such jobs: kombu's default sweep is 10 s x 10 (about
        # every 100 s, whatever the visibility timeout); every second keeps redelivery prompt.
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    # ...and reading or writing a state in the result backend (Celery's default waits 120 s).
    redis_socket_connect_timeout=settings.redis_timeout_seconds,
    redis_socket_timeout=settings.redis_timeout_seconds,
    # At least once: acknowledge a job when it is done, not when it is taken, so a job whose
    # worker dies is redelivered (its tasks must then be safe to run twice: see tasks.py)...
    task_acks_late=True,
    # ...also when the worker process is killed outright (kill -9, out of memory)...
    task_reject_on_worker_lost=True,
    # ...and take one job at a time: a prefetched job waits, unacknowledged, behind a slow one.
    worker_prefetch_multiplier=1,
    # The periodic digest; run exactly one `celery beat`, or every digest is sent once per beat.
    beat_schedule={
        "send-digest": {"task": "stage4_rq_dramatiq.tasks.send_digest", "schedule": settings.digest_interval_seconds},
    },
    # Beat's default scheduler keeps a file (celerybeat-schedule) in the working folder; this one
    # keeps the schedule in memory: no file. A restarted beat forgets when it last sent the digest
    # and sends the next one a whole interval after its start.
    beat_scheduler="celery.beat:Scheduler",
    broker_use_ssl=tls_options(broker_url),
    redis_backend_use_ssl=tls_options(result_backend_url),
)


@worker_ready.connect
def warn_if_redis_may_evict_jobs(**_: object) -> None:
    """Say so at the worker's start when a full Redis would delete keys to make room: jobs too.

    Only maxmemory-policy noeviction keeps every accepted job: a full Redis then refuses new
    ones, and the API answers 503. A Redis that refuses CONFIG (managed ones may) cannot be
    checked here: the worker says so, and starts all the same.
    """
    timeout = settings.redis_timeout_seconds
    try:
        with redis.Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout) as client:
            policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "noeviction")
    except redis.ResponseError as error:
        logger.info("Could not check the maxmemory-policy of Redis (%s): a broker needs noeviction.", error)
        return
    except redis.RedisError:
        return  # not reachable: the worker says so itself, and keeps trying
    if policy != "noeviction":
        logger.warning(
            "Redis has maxmemory-policy %s: when it is full, it deletes keys to make room, waiting jobs "
            "among them (their ids then answer 404). A broker must keep its jobs: set maxmemory-policy "
            "noeviction (a full Redis then refuses new jobs, and the API answers 503).",
            policy,
        )
