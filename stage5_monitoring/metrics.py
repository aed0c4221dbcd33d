"""GET /metrics: what Prometheus reads from the API, in its text format (prometheus-client).

- http_requests_total{handler, method, status} and http_request_duration_seconds{handler, method, status}:
  every request, by route template (`/jobs/{job_id}`, never an id; a path with no route is `none`)
  and status (prometheus-fastapi-instrumentator).
- jobs_enqueued_total{task, queue}: the jobs this API process has published.
- jobs_waiting{queue} and jobs_queue_workers{queue}: read from Redis at each scrape (a collector,
  not a counter: Redis holds the truth, for all API processes alike); jobs_redis_up says if it could.
- jobs_task_queue_info{task, queue}: which queue each task's jobs wait in, always 1. Flower's metrics
  name the task but not the queue: the alert rules join them with this (see alerts.yml).

Every label has a value from a short list known in advance: a job id or a raw path as a label
would make a new time series for every job, until Prometheus runs out of memory. So does
anything a client chooses: a method it made up counts as `other`, a path as `none` (short_labels).
How the jobs end (succeeded, failed, retried, how long they ran) is counted from the workers'
events by Flower, at its own /metrics.
"""

import logging
from collections.abc import Iterator

import redis
from fastapi import FastAPI
from prometheus_client import REGISTRY, Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as http_metrics

# Part of the stage5_monitoring package; in a flat project: from celery_app import ...
from .celery_app import QUEUES, celery_app, queue_of
from .config import settings
from .workers import broker_redis, waiting_jobs, workers_per_queue

logger = logging.getLogger(__name__)

JOBS_ENQUEUED = Counter("jobs_enqueued_total", "Jobs published to a queue by this API process", ["task", "queue"])


class QueueCollector(Collector):
    """Read the queues' state from Redis each time Prometheus scrapes (within REDIS_TIMEOUT_SECONDS)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def describe(self) -> Iterator[Metric]:
        # The names only: without this, registering the collector would call collect(), and Redis, at import.
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        up, waiting, workers, routes = self._families()
        for task in stage_tasks():
            routes.add_metric([task, queue_of(task)], 1)
        yield routes
        try:
            waiting_now, workers_now = waiting_jobs(self.client), workers_per_queue(self.client)
        except redis.RedisError as error:
            logger.warning("metrics: could not read the queues from Redis: %s: %s", type(error).__name__, error)
            up.add_metric([], 0)
            yield up  # and no numbers for the queues: none is better than a wrong one
            return
        up.add_metric([], 1)
        for queue in QUEUES:
            waiting.add_metric([queue], waiting_now[queue])
            workers.add_metric([queue], workers_now[queue])
        yield from (up, waiting, workers)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("jobs_redis_up", "1 if the queues could be read from Redis at this scrape, else 0"),
            GaugeMetricFamily("jobs_waiting", "Jobs waiting in the queue, all priorities", labels=["queue"]),
            GaugeMetricFamily("jobs_queue_workers", "Workers that consume the queue", labels=["queue"]),
            GaugeMetricFamily(
                "jobs_task_queue_info", "The queue of each task's jobs (always 1)", labels=["task", "queue"]
            ),
        )


def stage_tasks() -> list[str]:
    """The names of this stage's tasks (Celery's own, such as celery.ping, left out)."""
    return sorted(name for name in celery_app.tasks if name.startswith(f"{celery_app.main}."))


# The methods a request is counted by; a client may send any word (uvicorn passes it on).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def short_labels(info: http_metrics.Info) -> None:
    """Count an invented method as "other", and a path redirected to add or drop its "/" as "none".

    The instrumentator labels a request with the method the client sent (`curl -X ZZTOP`), and a
    path that Starlette redirects to itself with or without its trailing "/" (`/jobs/anything/`,
    307) with that path: a new series for each.
    """
    if info.method not in HTTP_METHODS:
        info.method = "other"
    if info.modified_status == "307" and "route" not in info.request.scope:  # no route: the redirect
        info.modified_handler = "none"


def instrument(app: FastAPI) -> None:
    """Count and time every request, and serve GET /metrics."""
    for task in stage_tasks():
        JOBS_ENQUEUED.labels(task=task, queue=queue_of(task))  # a 0 from the start, so rate() sees the first job
    instrumentator = Instrumentator(should_group_status_codes=False, excluded_handlers=["/metrics"])
    instrumentator.add(short_labels)  # first: the two metrics below read the labels it leaves
    instrumentator.add(http_metrics.requests())
    instrumentator.add(http_metrics.latency(buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)))
    instrumentator.instrument(app).expose(app, include_in_schema=False)


REGISTRY.register(QueueCollector(broker_redis(settings.redis_timeout_seconds)))
