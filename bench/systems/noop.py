"""The task every system runs: do nothing, but record that it ran and when.

One ``RPUSH bench:done "<index> <enqueued_at> <ran_at>"`` per run, on the same
Redis as the queue. It is the same single command for every system, and the
benchmark subtracts it from the commands it counts. A list keeps duplicates, so
a job that ran twice shows up twice. Both times are ``time.time()`` on the same
machine, so ``ran_at - enqueued_at`` is the latency from enqueue to task start.
"""

from __future__ import annotations

import os
import time

import redis
from redis.driver_info import DriverInfo

REDIS_URL_ENV = "BENCH_REDIS_URL"
LEDGER_KEY = "bench:done"


def redis_url_from_env() -> str:
    """The benchmark's Redis, which python -m bench passes to every worker it starts."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        raise RuntimeError(f"{REDIS_URL_ENV} is not set: the worker modules of bench/ are started by python -m bench")
    return url


def ledger_client(url: str) -> redis.Redis:
    """A Redis client for the records that costs no command but the RPUSH itself.

    RESP2 and no library name: a new connection sends no HELLO or CLIENT SETINFO
    first. That matters for workers that fork a child per job (RQ's default), where
    every child opens its own connection.
    """
    return redis.Redis.from_url(url, protocol=2, driver_info=DriverInfo(name=None, lib_version=None))


def record_run(ledger: redis.Redis, index: int, enqueued_at: float) -> None:
    """The no-op task's body: one RPUSH saying which job ran, and when it started."""
    ledger.rpush(LEDGER_KEY, f"{index} {enqueued_at!r} {time.time()!r}")
