"""What waits in each queue, and which workers consume it: read from Redis, quickly.

Redis keeps no list of who consumes a queue, and Celery's way to ask the workers (a
broadcast, `celery inspect active_queues`) waits its whole timeout for answers that
may never come. So each worker notes in Redis which queues it consumes, five times per
WORKER_NOTE_EXPIRY_SECONDS: a sorted set per queue, worker name -> when it last said so.
A worker that stops saying so (killed, cut off) drops out when its note expires.
"""

import time
from typing import Any

import redis
from celery.signals import worker_ready, worker_shutdown
from celery.worker.consumer import Consumer
from redis.backoff import NoBackoff
from redis.retry import Retry

# Part of the stage5_monitoring package; in a flat project: from celery_app import ...
from .celery_app import PRIORITIES, QUEUES
from .config import settings


def broker_redis(timeout_seconds: float) -> redis.Redis:
    """The broker's Redis (REDIS_URL), where a call waits ``timeout_seconds`` at most and is not retried."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
    )


def priority_lists(queue: str) -> list[str]:
    """The Redis lists of a queue: one per priority step ("reports", "reports:3", "reports:6")."""
    return [queue if step == 0 else f"{queue}:{step}" for step in sorted(PRIORITIES.values())]


def workers_key(queue: str) -> str:
    return f"queue-workers:{queue}"


def waiting_jobs(client: redis.Redis) -> dict[str, int]:
    """How many jobs wait in each queue, all priorities together (one round trip)."""
    with client.pipeline(transaction=False) as pipe:
        for queue in QUEUES:
            for name in priority_lists(queue):
                pipe.llen(name)
        lengths = iter(pipe.execute())
    return {queue: sum(next(lengths) for _ in priority_lists(queue)) for queue in QUEUES}


def workers_per_queue(client: redis.Redis) -> dict[str, int]:
    """How many workers said in the last WORKER_NOTE_EXPIRY_SECONDS that they consume each queue."""
    since = time.time() - settings.worker_note_expiry_seconds
    with client.pipeline(transaction=False) as pipe:
        for queue in QUEUES:
            pipe.zcount(workers_key(queue), since, "+inf")
        return dict(zip(QUEUES, pipe.execute(), strict=True))


# The worker's side ------------------------------------------------------------------------------

_notes = broker_redis(settings.redis_timeout_seconds)


@worker_ready.connect
def note_queues_while_running(sender: Consumer, **_: Any) -> None:
    """Once the worker is ready, and every few seconds from then on, note which queues it consumes."""

    def note() -> None:
        if sender.task_consumer is None:  # stopping
            return
        now = time.time()
        try:
            with _notes.pipeline(transaction=False) as pipe:
                for queue in sender.task_consumer.queues:
                    pipe.zadd(workers_key(queue.name), {sender.hostname: now})
                    pipe.zremrangebyscore(workers_key(queue.name), "-inf", now - settings.worker_note_expiry_seconds)
                pipe.execute()
        except redis.RedisError:
            pass  # the worker's own connection to Redis reports the trouble; the next note may pass

    note()
    sender.timer.call_repeatedly(settings.worker_note_expiry_seconds / 5, note)


@worker_shutdown.connect
def forget_queues(sender: Any, **_: Any) -> None:
    """A worker that stops cleanly drops out at once (a killed one when its note expires)."""
    try:
        with _notes.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                pipe.zrem(workers_key(queue), sender.hostname)
            pipe.execute()
    except redis.RedisError:
        pass
