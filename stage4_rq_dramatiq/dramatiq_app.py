"""Dramatiq's broker, with what the job API needs and Dramatiq does not keep: job states.

Dramatiq keeps no state per message: a message is in a queue, being processed, or
gone. So JobStates, a small middleware, writes one Redis hash per message as it moves
(queued or scheduled, started, retrying, succeeded, failed), with its attempts and
last error; results go through Dramatiq's own Results middleware. NoteWorker, another,
notes in Redis which worker processes run, for GET /health and the status of a queued job.

The broker must be set before any actor is declared: dramatiq_actors.py imports this
module first.
"""

import json
import os
import socket
import threading
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import CurrentMessage, Middleware, Retries
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend
from redis import Redis, RedisError

# Part of the stage4_rq_dramatiq package; in a flat project: from config import settings
from .config import settings

QUEUE = "default"
# The worker processes that consume QUEUE, noted as Celery's workers note theirs (see workers.py).
# Not the broker's own heartbeats (dramatiq:__heartbeats__): every process that sends the broker a
# command is there, also an API that only enqueues.
WORKERS = f"dramatiq:workers:{QUEUE}"


def state_key(message_id: str) -> str:
    return f"dramatiq-job:{message_id}"


class JobStates(Middleware):
    """Record each message's state in Redis (one hash per message id, expiring with the results)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    def record(self, message_id: str, **fields: Any) -> None:
        values = {name: json.dumps(value) for name, value in fields.items()}
        with self.redis.pipeline() as pipe:
            pipe.hset(state_key(message_id), mapping=values)
            pipe.expire(state_key(message_id), settings.result_expires_seconds)
            pipe.execute()

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        if message.options.get("retries"):
            return  # a retry: after_process_message says "retrying"
        due = datetime.now(UTC) + timedelta(milliseconds=delay) if delay else None
        fields = {"status": "scheduled" if due else "queued", "actor": message.actor_name, "args": list(message.args)}
        self.record(message.message_id, **fields, run_at=due.isoformat() if due else None)

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self.redis.hincrby(state_key(message.message_id), "attempts", 1)
        self.record(message.message_id, status="started")

    def after_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy, *, result: Any = None, exception: Any = None
    ) -> None:
        # Added before Retries, so called after it: message.failed says whether it will be retried.
        if exception is None:
            self.record(message.message_id, status="succeeded")
        else:
            error = f"{type(exception).__name__}: {exception}"
            failed_at = datetime.now(UTC).isoformat(timespec="seconds")
            status = "failed" if message.failed else "retrying"
            # The Redis broker keys a message by an id of its own (in the dead-letter queue too).
            redis_id = message.options.get("redis_message_id")
            self.record(message.message_id, status=status, error=error, failed_at=failed_at, redis_id=redis_id)

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        self.record(message.message_id, status="failed", error="skipped (too old, or cancelled)")


class NoteWorker(Middleware):
    """While a worker process runs, a thread notes it in WORKERS, five times per WORKER_NOTE_EXPIRY_SECONDS.

    A process that stops cleanly takes its name out; a killed one drops out when its note expires.
    """

    def __init__(self, redis: Any) -> None:
        self.redis = redis

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}"  # a worker process
        self.stopping = threading.Event()
        self.note()  # at once: a worker that says it is ready is counted
        self.thread = threading.Thread(target=self.note_until_stopped, name="note-worker", daemon=True)
        self.thread.start()

    def note(self) -> None:
        now = time.time()
        with suppress(RedisError), self.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(WORKERS, {self.name: now})
            # Drop the notes of killed workers; the key itself goes when no worker renews it.
            pipe.zremrangebyscore(WORKERS, "-inf", now - settings.worker_note_expiry_seconds)
            pipe.expire(WORKERS, int(settings.worker_note_expiry_seconds) + 1)
            pipe.execute()

    def note_until_stopped(self) -> None:
        while not self.stopping.wait(settings.worker_note_expiry_seconds / 5):
            self.note()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopping.set()
        self.thread.join()
        with suppress(RedisError):
            self.redis.zrem(WORKERS, self.name)


broker = RedisBroker(
    # A client, not url=: RedisBroker builds its own pool from a URL and drops the timeouts
    # given beside it (a stalled Redis then made the API wait redis-py's default 5 s). The
    # worker shares these: it polls its queues and never sends a command that blocks.
    client=Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
    ),
    # A worker killed mid-job leaves its message in an "acks" set until another worker's
    # maintenance sees the dead worker's heartbeat time out; maintenance runs on a random
    # fraction of commands (per million). Dramatiq's defaults: 60 s and 1,000 per million.
    heartbeat_timeout=int(settings.dramatiq_heartbeat_timeout_seconds * 1000),
    maintenance_chance=settings.dramatiq_maintenance_chance,
)
job_states = JobStates(broker.client)
results = RedisBackend(client=broker.client)
# Before Retries, so that its after_process_message runs after Retries' (after-hooks run in reverse).
broker.add_middleware(job_states, before=Retries)
broker.add_middleware(CurrentMessage())
broker.add_middleware(NoteWorker(broker.client))
broker.add_middleware(Results(backend=results, result_ttl=settings.result_expires_seconds * 1000))
dramatiq.set_broker(broker)


def report_progress(current: int, total: int) -> None:
    """Progress of the running actor's message, for the job API (Dramatiq has no place for it)."""
    message = CurrentMessage.get_current_message()
    job_states.record(message.message_id, status="progress", progress={"current": current, "total": total})
