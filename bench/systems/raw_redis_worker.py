"""The floor: a Redis list as a queue, LPUSH to enqueue, BRPOP to take the next job.

Run by the benchmark as ``python -m bench.systems.raw_redis_worker``. No library,
no retries, no results, no acknowledgement: a job is gone from Redis the moment
BRPOP hands it out (acks early). Every Redis queue does at least this much.
"""

from __future__ import annotations

import json

import redis

from bench.systems.noop import ledger_client, record_run, redis_url_from_env

QUEUE_KEY = "bench:raw-queue"


class RawRedisProducer:
    """Enqueue a job as one LPUSH of a small JSON message."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def enqueue(self, index: int, enqueued_at: float) -> None:
        self.client.lpush(QUEUE_KEY, json.dumps([index, enqueued_at]))

    def close(self) -> None:
        self.client.close()


def work_forever(url: str) -> None:
    # BRPOP with timeout 0 waits as long as it takes, so the socket must not time
    # out first (redis-py 8 gives sockets a 5 s timeout by default).
    queue = redis.Redis.from_url(url, socket_timeout=None)
    ledger = ledger_client(url)
    while True:
        _key, message = queue.brpop([QUEUE_KEY], timeout=0)
        index, enqueued_at = json.loads(message)
        record_run(ledger, index, enqueued_at)


if __name__ == "__main__":
    print("raw Redis worker: waiting for jobs", flush=True)
    work_forever(redis_url_from_env())
