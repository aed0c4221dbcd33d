"""RQ: the no-op job function, and how the benchmark enqueues it.

The worker is RQ's own command line, run by the benchmark as
``rq worker --serializer json bench`` (the default Worker forks a "work horse"
child for every job) or with ``--worker-class rq.worker.SimpleWorker`` (runs each
job in the worker process itself). Settings, stated for fairness:

- ``result_ttl=0``: the result is not kept;
- JSON serialization rather than RQ's default pickle, like the other systems;
- no retries: RQ retries only with ``retry=Retry(...)``, which is not passed;
- a job leaves the queue when a worker takes it and sits in the StartedJobRegistry
  until it ends; a worker that dies mid-job leaves it there, it is not run again.
"""

from __future__ import annotations

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from bench.systems.noop import ledger_client, record_run, redis_url_from_env

QUEUE_NAME = "bench"

ledger = ledger_client(redis_url_from_env())


def noop(index: int, enqueued_at: float) -> None:
    record_run(ledger, index, enqueued_at)


class RQProducer:
    """Enqueue with ``Queue.enqueue_call``."""

    def __init__(self, url: str) -> None:
        self.connection = redis.Redis.from_url(url)
        self.queue = Queue(QUEUE_NAME, connection=self.connection, serializer=JSONSerializer)

    def enqueue(self, index: int, enqueued_at: float) -> None:
        self.queue.enqueue_call(noop, args=(index, enqueued_at), result_ttl=0)

    def close(self) -> None:
        self.connection.close()
