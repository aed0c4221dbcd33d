"""Celery: the no-op task, and the app the worker loads.

Run by the benchmark as ``celery -A bench.systems.celery_tasks worker --pool=solo``
(one task at a time in the worker process) or ``--pool=prefork --concurrency=2``
(two forked child processes). Settings, stated for fairness:

- no result backend and ``ignore_result``: results are not kept;
- ``task_acks_late=False``, Celery's default: a message is acknowledged when the
  worker receives it, before the task runs (acks early);
- no retries: Celery retries only when a task asks for it or sets autoretry_for;
- the default prefetch (4 messages per pool process) and JSON serialization.
"""

from __future__ import annotations

from celery import Celery

from bench.systems.noop import ledger_client, record_run, redis_url_from_env

REDIS_URL = redis_url_from_env()
QUEUE_NAME = "bench"

app = Celery("bench", broker=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE_NAME,
    task_ignore_result=True,
    task_acks_late=False,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)

ledger = ledger_client(REDIS_URL)


@app.task(name="bench.noop")
def noop(index: int, enqueued_at: float) -> None:
    record_run(ledger, index, enqueued_at)


class CeleryProducer:
    """Enqueue with ``apply_async``, the call behind ``delay``."""

    def __init__(self, url: str) -> None:
        app.conf.broker_url = url

    def enqueue(self, index: int, enqueued_at: float) -> None:
        noop.apply_async((index, enqueued_at))

    def close(self) -> None:
        app.close()
