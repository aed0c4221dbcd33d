"""Every system the benchmark measures: how to start its worker, how to enqueue, its settings.

Producers are imported only when a system is measured, so choosing
``--systems raw-redis`` imports neither Celery nor RQ nor Dramatiq.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from bench.systems.noop import REDIS_URL_ENV
from tutorial.processes import python_command

RAW_REDIS = "raw-redis"
BACKGROUND_TASKS = "background-tasks"
# Read by Celery in place of the broker it is given, even one set in code: unset while the benchmark runs.
URL_OVERRIDES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")


def redis_url_environment(redis_url: str) -> dict[str, str | None]:
    """The changes to this process's environment that hand the benchmark's Redis to every system.

    The worker modules read BENCH_REDIS_URL at import, here (to enqueue) and in the
    workers and the API, which inherit this environment.
    """
    return {REDIS_URL_ENV: redis_url, **dict.fromkeys(URL_OVERRIDES)}


class Producer(Protocol):
    """The producer side of a system: one enqueue call per job."""

    def enqueue(self, index: int, enqueued_at: float) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class System:
    name: str  # as given to --systems
    label: str  # as shown in the table and the chart
    settings: str  # the fairness settings, in one line
    worker_args: tuple[str, ...] = ()  # after `python`; "{redis_url}" is filled in
    producer_path: str = ""  # "module:Class"; empty for BackgroundTasks

    @property
    def runs_in_api_process(self) -> bool:
        """BackgroundTasks has no worker and no producer: the API process runs the tasks."""
        return not self.worker_args

    def worker_command(self, redis_url: str) -> list[str]:
        return python_command(*(arg.replace("{redis_url}", redis_url) for arg in self.worker_args))

    def make_producer(self, redis_url: str) -> Producer:
        module_name, class_name = self.producer_path.split(":")
        producer_class = getattr(importlib.import_module(module_name), class_name)
        return producer_class(redis_url)


_CELERY_WORKER = ("-m", "celery", "-A", "bench.systems.celery_tasks", "worker", "--loglevel=WARNING")
_RQ_WORKER = ("-m", "rq.cli", "worker", "--url", "{redis_url}", "--serializer", "json", "--quiet")
_DRAMATIQ_WORKER = ("-m", "dramatiq", "bench.systems.dramatiq_actors", "--threads", "8")
_CELERY_SETTINGS = "no result backend, acks early (default), no retries, prefetch 4 per process (default)"
_RQ_SETTINGS = "result_ttl=0, JSON serializer, no Retry"
_DRAMATIQ_SETTINGS = "no Results middleware, acks late (its only mode), max_retries=0"

SYSTEMS: tuple[System, ...] = (
    System(
        RAW_REDIS,
        "raw Redis (LPUSH/BRPOP)",
        "redis-py only: no results, acks early (BRPOP removes the job), no retries",
        ("-m", "bench.systems.raw_redis_worker"),
        "bench.systems.raw_redis_worker:RawRedisProducer",
    ),
    System(
        "celery-solo",
        "Celery, solo pool",
        _CELERY_SETTINGS,
        (*_CELERY_WORKER, "--pool=solo"),
        "bench.systems.celery_tasks:CeleryProducer",
    ),
    System(
        "celery-prefork",
        "Celery, prefork -c 2",
        _CELERY_SETTINGS,
        (*_CELERY_WORKER, "--pool=prefork", "--concurrency=2"),
        "bench.systems.celery_tasks:CeleryProducer",
    ),
    System(
        "rq-simple",
        "RQ, SimpleWorker",
        _RQ_SETTINGS + ", no fork: jobs run in the worker process",
        (*_RQ_WORKER, "--worker-class", "rq.worker.SimpleWorker", "bench"),
        "bench.systems.rq_jobs:RQProducer",
    ),
    System(
        "rq-fork",
        "RQ, forking Worker",
        _RQ_SETTINGS + ", the default Worker: one forked child per job",
        (*_RQ_WORKER, "bench"),
        "bench.systems.rq_jobs:RQProducer",
    ),
    System(
        "dramatiq-threads",
        "Dramatiq, 1 process x 8 threads",
        _DRAMATIQ_SETTINGS,
        (*_DRAMATIQ_WORKER, "--processes", "1"),
        "bench.systems.dramatiq_actors:DramatiqProducer",
    ),
    System(
        "dramatiq-2-processes",
        "Dramatiq, 2 processes x 8 threads",
        _DRAMATIQ_SETTINGS,
        (*_DRAMATIQ_WORKER, "--processes", "2"),
        "bench.systems.dramatiq_actors:DramatiqProducer",
    ),
    System(
        BACKGROUND_TASKS,
        "FastAPI BackgroundTasks",
        "in the API process, after the response, one task at a time in the thread pool; nothing kept",
    ),
)


def select_systems(names: str | None) -> list[System]:
    """The systems named in a comma-separated list, in catalog order; raw Redis is always measured.

    Raw Redis is the reference every ratio divides by, so it is added when missing.
    """
    if not names:
        return list(SYSTEMS)
    wanted = {name.strip() for name in names.split(",") if name.strip()}
    known = {system.name for system in SYSTEMS}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    wanted.add(RAW_REDIS)
    return [system for system in SYSTEMS if system.name in wanted]
