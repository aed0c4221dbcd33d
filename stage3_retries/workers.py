"""Which queues have a worker: each worker notes it in Redis, and the API reads the notes.

A job posted while no worker runs waits in Redis, `queued`, for ever: nothing fails, so
nothing says so. Redis keeps no list of who consumes a queue, and Celery's way to ask the
workers (a broadcast, `celery inspect active_queues`) waits its whole timeout for answers
that may never come. So each worker notes in Redis which queues it consumes, five times per
WORKER_NOTE_EXPIRY_SECONDS: a sorted set per queue, worker name -> when it last said so.
A worker that stops cleanly takes its name out; a killed one drops out when its note expires.
GET /health counts the workers of each queue, and a queued job whose queue has none says so.
"""

import threading
import time
from contextlib import suppress

import redis
from celery import bootsteps
from celery.worker.consumer import Consumer
from redis.backoff import NoBackoff
from redis.retry import Retry

# Part of the stage3_retries package; in a flat project: from celery_app import celery_app
from .celery_app import celery_app
from .config import settings

# The queues of this stage: one, Celery's default, "celery", where every job waits.
QUEUES = (celery_app.conf.task_default_queue,)


def broker_redis(timeout_seconds: float) -> redis.Redis:
    """The broker's Redis (REDIS_URL), where a call waits ``timeout_seconds`` at most and is not retried."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        retry=Retry(NoBackoff(), 0),
    )


def workers_key(queue: str) -> str:
    # Named after the app ("<app>:workers:<queue>"): the stages all use Redis's database 0 by
    # default, and a worker of another stage, on a queue of the same name, runs none of these jobs.
    return f"{celery_app.main}:workers:{queue}"


def workers_per_queue(client: redis.Redis) -> dict[str, int]:
    """How many workers said in the last WORKER_NOTE_EXPIRY_SECONDS that they consume each queue (one round trip)."""
    since = time.time() - settings.worker_note_expiry_seconds
    with client.pipeline(transaction=False) as pipe:
        for queue in QUEUES:
            pipe.zcount(workers_key(queue), since, "+inf")
        return dict(zip(QUEUES, pipe.execute(), strict=True))


notes = broker_redis(settings.redis_timeout_seconds)


def no_worker_note(queue: str) -> str | None:
    """For a job that waits in ``queue``: a note when no worker consumes it, else None (one round trip)."""
    if workers_per_queue(notes)[queue]:
        return None
    return f"No worker consumes the queue '{queue}': the job waits until one starts (the stage's README says how)."


# The worker's side ------------------------------------------------------------------------------


class NoteQueues(bootsteps.StartStopStep):
    """A step of every worker of this app (added below): from the moment it consumes its queues
    until it stops, note so in Redis.

    A thread of its own renews the note: a worker of the solo pool (--pool=solo, as on Windows)
    runs no timer of its own while it runs a job, and a long job would count as no worker.
    """

    requires = {"celery.worker.consumer.tasks:Tasks"}  # after the step that consumes the queues
    thread: threading.Thread | None = None

    def start(self, consumer: Consumer) -> None:
        self.name = consumer.hostname
        self.keys = [workers_key(queue.name) for queue in consumer.task_consumer.queues]
        self.stopping = threading.Event()
        self.note()  # at once: a worker that says "ready." is counted
        self.thread = threading.Thread(target=self.note_until_stopped, name="note-queues", daemon=True)
        self.thread.start()

    def note(self) -> None:
        now = time.time()
        try:
            with notes.pipeline(transaction=False) as pipe:
                for key in self.keys:
                    pipe.zadd(key, {self.name: now})
                    # Drop the notes of workers that were killed; the key itself goes when no worker renews it.
                    pipe.zremrangebyscore(key, "-inf", now - settings.worker_note_expiry_seconds)
                    pipe.expire(key, int(settings.worker_note_expiry_seconds) + 1)
                pipe.execute()
        except redis.RedisError:
            pass  # the worker's own connection reports the trouble; the next note may pass

    def note_until_stopped(self) -> None:
        while not self.stopping.wait(settings.worker_note_expiry_seconds / 5):
            self.note()

    def stop(self, consumer: Consumer) -> None:
        """A worker that stops cleanly drops out at once (a killed one when its note expires)."""
        if self.thread is None:
            return  # never started (Redis was not reachable)
        self.stopping.set()
        self.thread.join()
        self.thread = None
        with suppress(redis.RedisError), notes.pipeline(transaction=False) as pipe:
            for key in self.keys:
                pipe.zrem(key, self.name)
            pipe.execute()


celery_app.steps["consumer"].add(NoteQueues)
