"""The API whose response time the benchmark watches, and the BackgroundTasks system.

Served by uvicorn in its own process: ``uvicorn bench.api_app:app``.

- ``GET /ping`` is the trivial endpoint: its p99 while a system drains a backlog,
  next to its p99 when nothing runs, is the "API impact" figure.
- ``POST /enqueue?first=I&n=N`` schedules the no-op task N times as FastAPI
  BackgroundTasks: they run in this very process, one after the other, after the
  response is sent. The task is a plain ``def``, so Starlette runs each one in its
  thread pool, as it would a learner's blocking task.
"""

from __future__ import annotations

import time

from fastapi import BackgroundTasks, FastAPI, Query, status

from bench.systems.noop import ledger_client, record_run, redis_url_from_env

app = FastAPI(title="bench API")
ledger = ledger_client(redis_url_from_env())


def noop(index: int, enqueued_at: float) -> None:
    record_run(ledger, index, enqueued_at)


@app.get("/ping")
async def ping() -> dict[str, bool]:
    return {"ok": True}


@app.post("/enqueue", status_code=status.HTTP_202_ACCEPTED)
async def enqueue(
    background_tasks: BackgroundTasks,
    first: int = Query(ge=0),
    n: int = Query(ge=1, le=1_000_000),
) -> dict[str, int]:
    for index in range(first, first + n):
        # The "enqueue time" of a BackgroundTask: when it is added, before the response.
        background_tasks.add_task(noop, index, time.time())
    return {"scheduled": n}
