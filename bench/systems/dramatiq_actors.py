"""Dramatiq: the no-op actor on a Redis broker.

Run by the benchmark as ``dramatiq bench.systems.dramatiq_actors --processes 1
--threads 8`` (one process, Dramatiq's default 8 threads) or ``--processes 2``.
Settings, stated for fairness:

- no Results middleware: results are not kept;
- ``max_retries=0``: Dramatiq retries a failed message up to 20 times by default;
- a message is acknowledged after the actor returns (acks late), Dramatiq's only mode;
- JSON messages, and each process prefetches up to twice its thread count (the default).
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.systems.noop import ledger_client, record_run, redis_url_from_env

REDIS_URL = redis_url_from_env()
QUEUE_NAME = "bench"

broker = RedisBroker(url=REDIS_URL)
dramatiq.set_broker(broker)
ledger = ledger_client(REDIS_URL)


@dramatiq.actor(queue_name=QUEUE_NAME, max_retries=0)
def noop(index: int, enqueued_at: float) -> None:
    record_run(ledger, index, enqueued_at)


class DramatiqProducer:
    """Enqueue with ``actor.send``, on the broker this module made from BENCH_REDIS_URL."""

    def __init__(self, url: str) -> None:
        if url != REDIS_URL:
            raise ValueError(f"{__name__} was imported for {REDIS_URL}, not {url}")

    def enqueue(self, index: int, enqueued_at: float) -> None:
        noop.send(index, enqueued_at)

    def close(self) -> None:
        broker.close()
