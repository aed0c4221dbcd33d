"""Demo chapter for stage 2: a Celery worker runs the jobs, the API tells their status."""

from __future__ import annotations

import re
import sys
import time
import uuid
from typing import Any

import httpx

from tutorial.tour import Tour
from tutorial.waiting import wait_until

TITLE = "Stage 2: Celery with Redis"
# --without-mingle: a lone worker need not wait a second for others to answer (see the bench's boot times).
WORKER_ARGS = ("-m", "celery", "-A", "stage2_celery", "worker", "--loglevel=INFO", "--pool=solo", "--without-mingle")
# Slow enough to watch, quick enough for a demo.
PACE = {"ADD_DELAY_SECONDS": "1", "REPORT_STEP_SECONDS": "0.25"}
# "Task stage2_celery.tasks.add[<job id>] succeeded in 1.0084s: 5" -> add, the id's first 8 digits, succeeded
WORKER_LOG_EVENT = re.compile(r"Task stage2_celery\.tasks\.(\w+)\[([0-9a-f]{8})[0-9a-f-]*\] (received|succeeded)")
REPORT_ROWS = [12.5, 7, 3.25, 18, 9, 4.5, 11, 6, 15.75, 2, 8, 10]


def run(tour: Tour) -> None:
    tour.chapter(TITLE)
    tour.say(
        "The API no longer does the work: it publishes each job to Redis (the broker) and "
        "answers 202 with a job id. A separate worker process takes the jobs, runs them, and "
        "writes their state and result back to Redis (the result backend), where "
        "GET /jobs/{id} reads them."
    )
    # tour.redis finds or starts a Redis; the API and the worker get its URL as REDIS_URL.
    broker_url = tour.redis.url
    tour.show("queue and results", broker_url)
    api = tour.start_api("stage2_celery.main:app", **PACE)

    with httpx.Client(base_url=api, timeout=10) as client:
        tour.step("POST /jobs/add {x: 2, y: 3} while no worker runs: the job waits in Redis")
        status_url = enqueue(tour, client, "/jobs/add", {"x": 2, "y": 3})
        job = client.get(status_url).json()
        tour.show("GET", f"{job['status']} ({job['backend_status']})")

        tour.step("Start a worker: celery -A stage2_celery worker --loglevel=INFO --pool=solo --without-mingle")
        worker = tour.start_process("stage2-worker", *WORKER_ARGS, ready_text=" ready.", **PACE)
        tour.say("It takes the waiting job at once, and reports STARTED, then SUCCESS with the sum:")
        done = follow_statuses(tour, client, status_url)
        tour.show("result", done["result"])

        tour.step(f"POST /jobs/report with {len(REPORT_ROWS)} rows: the task reports its progress")
        status_url = enqueue(tour, client, "/jobs/report", {"rows": REPORT_ROWS})
        done = draw_progress(client, status_url)
        tour.show("result", done["result"])

        tour.step("POST /users/42/welcome: the worker sends the welcome e-mail")
        mails_before = len(tour.smtp.messages)
        status_url = enqueue(tour, client, "/users/42/welcome")
        follow_statuses(tour, client, status_url)
        mail = tour.smtp.wait_for_messages(mails_before + 1)[-1]
        tour.show("e-mail", f"to {', '.join(mail.rcpt_tos)}: {mail.subject!r}")

        tour.step("GET /jobs/<an id that was never issued>")
        tour.say("Celery alone says PENDING for any id, forever; the API marks every job it issues, so it can say 404.")
        response = client.get(f"/jobs/{uuid.uuid4()}")
        tour.show("answer", f"{response.status_code} {response.json()}")

    tour.step("The worker's log: each job received and finished")
    for line in worker.output().splitlines():
        event = WORKER_LOG_EVENT.search(line)
        if event:
            task, short_id, what = event.groups()
            tour.show("worker", f"{task} {short_id}... {what}")

    tour.say(
        "The jobs now wait in Redis until a worker takes them, and anyone can ask how they are "
        "doing. What stage 2 cannot do yet: retry a failed job, and survive a worker killed "
        "in the middle of one. That is stage 3."
    )


def enqueue(tour: Tour, client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> str:
    started = time.monotonic()
    response = client.post(path, json=body)
    response.raise_for_status()
    tour.show("answer", f"{response.status_code} {response.json()} after {time.monotonic() - started:.3f}s")
    return response.json()["status_url"]


def follow_statuses(tour: Tour, client: httpx.Client, status_url: str, timeout: float = 30) -> dict[str, Any]:
    """Poll the job and print each new status until it has finished; return the last answer."""
    started = time.monotonic()
    seen: list[str] = []

    def finished() -> dict[str, Any] | None:
        job = client.get(status_url).json()
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
            tour.show(f"GET after {time.monotonic() - started:.2f}s", f"{job['status']} ({job['backend_status']})")
        return job if job["status"] in ("succeeded", "failed") else None

    return wait_until(finished, timeout=timeout, what=f"{status_url} to finish", seen=lambda: seen)


def draw_progress(client: httpx.Client, status_url: str, timeout: float = 30) -> dict[str, Any]:
    """Poll the job and draw its progress as a bar until it has finished; return the last answer."""
    last_bar = ""

    def finished() -> dict[str, Any] | None:
        nonlocal last_bar
        job = client.get(status_url).json()
        if job["status"] == "succeeded":
            total = job["result"]["rows"]
            progress = {"current": total, "total": total}
        else:
            progress = job.get("progress") or {"current": 0, "total": len(REPORT_ROWS)}
        bar = progress_bar(progress["current"], progress["total"], job["status"])
        if bar != last_bar:
            # On a terminal the bar redraws in place; in a log, each step is a line.
            print(f"\r   {bar}", end="" if sys.stdout.isatty() else "\n", flush=True)
            last_bar = bar
        return job if job["status"] in ("succeeded", "failed") else None

    job = wait_until(finished, timeout=timeout, what=f"{status_url} to finish")
    if sys.stdout.isatty():
        print(flush=True)
    return job


def progress_bar(current: int, total: int, status: str, width: int = 30) -> str:
    filled = width * current // total if total else 0
    return f"[{'#' * filled}{'.' * (width - filled)}] {current:>2}/{total} {status}"
