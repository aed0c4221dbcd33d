"""Demo chapter for stage 3: retries, a dead letter replayed, and a worker killed mid-job."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import redis

from tutorial.processes import ManagedProcess
from tutorial.tour import Tour
from tutorial.waiting import wait_until

TITLE = "Stage 3: Celery that survives failure"
# --without-mingle: a lone worker need not wait a second for others to answer (see the bench's boot times).
WORKER_ARGS = ("-m", "celery", "-A", "stage3_retries", "worker", "--loglevel=INFO", "--pool=solo", "--without-mingle")
WORKER_COMMAND = "celery -A stage3_retries worker --loglevel=INFO --pool=solo --without-mingle"
# Quick enough for a demo: waits of at most 0.3 s, then 0.6 s; 3 attempts in all; a killed worker's
# job back after 3 s, longer than add's 2 s, as a visibility timeout must be.
PACE = {
    "RETRY_BACKOFF_SECONDS": "0.3",
    "WEBHOOK_MAX_RETRIES": "2",
    "VISIBILITY_TIMEOUT_SECONDS": "3",
    "ADD_DELAY_SECONDS": "2",
}
FINISHED = ("succeeded", "failed")


def run(tour: Tour) -> None:
    tour.chapter(TITLE)
    tour.say(
        "Stage 2 runs every job once: a failure is final, and a worker killed halfway loses its "
        "job. Here a failed webhook is retried with backoff and jitter, a job that fails for good "
        "is kept as a dead letter that can be replayed, and a job is acknowledged only when it is "
        "done, so a killed worker loses nothing."
    )
    tour.show("queue and results", tour.redis.url)
    tour.show("webhook receiver", f"{tour.webhooks.url} (it fails on purpose when told to)")
    api = tour.start_api("stage3_retries.main:app", **PACE)
    tour.step(f"Start a worker: {WORKER_COMMAND}")
    worker = tour.start_process("stage3-worker", *WORKER_ARGS, ready_text=" ready.", **PACE)
    tour.show("settings", ", ".join(f"{name}={value}" for name, value in PACE.items()))

    with httpx.Client(base_url=api, timeout=10) as client:
        flaky_delivery(tour, client)
        dead_letter_replayed(tour, client)
        worker_killed_mid_job(tour, client, worker)

    tour.say(
        "Retried with jitter, kept when it fails for good, and run again after a crash: at "
        "least once, with each task made safe to run twice. Stage 4 puts the same job API on "
        "RQ and Dramatiq."
    )


def flaky_delivery(tour: Tour, client: httpx.Client) -> None:
    tour.step("POST /events to a receiver that answers 503 twice, then 200")
    tour.webhooks.fail_first(2, status=503)
    job_id = enqueue(tour, client, "/events", {"type": "user.created", "payload": {"user_id": 42}})
    tour.say("Each attempt as it arrives at the receiver, and the job's status in between:")
    done = follow_delivery(tour, client, job_id)
    tour.show("GET", f"{done['status']} after {done['attempts']} attempts, result {done['result']}")
    deliveries = len(tour.webhooks.requests_with_key(job_id))
    tour.say(
        f"The waits were random (full jitter), so that many failed jobs do not all come back in "
        f"the same second. All {deliveries} deliveries carried the job id as Idempotency-Key: a "
        "receiver that got an attempt whose answer was lost can tell the next one is a repeat."
    )
    tour.webhooks.heal()


def dead_letter_replayed(tour: Tour, client: httpx.Client) -> None:
    tour.step("POST /events to a receiver that is down: every delivery answers 500")
    tour.webhooks.fail_always(500)
    job_id = enqueue(tour, client, "/events", {"type": "invoice.paid", "payload": {"invoice": 7}})
    done = follow_delivery(tour, client, job_id)
    tour.show("GET", f"{done['status']} after {done['attempts']} attempts: {done['error']}")
    (letter,) = client.get("/dead-letters").json()
    tour.show("dead letter", f"{letter['task']} {letter['args']}, {letter['attempts']} attempts")
    tour.say("Celery forgets a failed job when its result expires; the dead letter stays until someone acts.")

    tour.step("The receiver is fixed: POST /dead-letters/<id>/replay")
    tour.webhooks.heal()
    response = client.post(f"/dead-letters/{job_id}/replay")
    replayed = response.json()["job_id"]
    tour.show("replay", f"{response.status_code}, a new job {replayed[:8]}... (the dead one was {job_id[:8]}...)")
    done = follow_delivery(tour, client, replayed)
    tour.show("GET", f"{done['status']} after {done['attempts']} attempt(s)")
    tour.show("dead letters left", client.get("/dead-letters").json())
    again = client.post(f"/dead-letters/{job_id}/replay")
    tour.show("a second replay", f"{again.status_code} {again.json()['detail']}")


def worker_killed_mid_job(tour: Tour, client: httpx.Client, worker: ManagedProcess) -> None:
    tour.step("POST /jobs/add {x: 20, y: 22} (2 s of work), then kill -9 the worker in the middle")
    job_id = enqueue(tour, client, "/jobs/add", {"x": 20, "y": 22})
    wait_for(client, job_id, lambda job: job["status"] == "started", "started")
    worker.kill()  # SIGKILL: no clean-up, no acknowledgement
    killed_at = time.monotonic()
    job = client.get(f"/jobs/{job_id}").json()
    tour.show("after the kill", f"{job['status']} ({job['backend_status']}), attempts {job['attempts']}")
    with redis.Redis.from_url(tour.redis.url, socket_timeout=5, socket_connect_timeout=5) as queue:
        tour.show("unacknowledged in Redis", queue.hlen("unacked"))
    tour.say(
        "acks_late: the job is acknowledged when it is done, not when a worker takes it, so Redis "
        "still has it. (In stage 2 it would say 'started' forever.) A new worker puts it back in "
        "the queue once it has been unacknowledged longer than the visibility timeout, 3 s here."
    )

    tour.step(f"Start a new worker: {WORKER_COMMAND}")
    tour.start_process("stage3-worker-2", *WORKER_ARGS, ready_text=" ready.", **PACE)
    done = wait_for(client, job_id, lambda job: job["status"] in FINISHED, "finished", timeout=30)
    tour.show(
        f"GET {time.monotonic() - killed_at:.1f}s after the kill",
        f"{done['status']}, result: {done.get('result')} after {done['attempts']} attempts",
    )


def enqueue(tour: Tour, client: httpx.Client, path: str, body: dict[str, Any]) -> str:
    response = client.post(path, json=body)
    response.raise_for_status()
    tour.show("answer", f"{response.status_code} {response.json()}")
    return response.json()["job_id"]


def wait_for(
    client: httpx.Client, job_id: str, reached: Callable[[dict[str, Any]], bool], what: str, timeout: float = 15
) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def answer() -> dict[str, Any] | None:
        seen.append(client.get(f"/jobs/{job_id}").json())
        return seen[-1] if reached(seen[-1]) else None

    return wait_until(answer, timeout=timeout, what=f"job {job_id} to be {what}", seen=lambda: seen[-2:])


def follow_delivery(tour: Tour, client: httpx.Client, job_id: str, timeout: float = 15) -> dict[str, Any]:
    """Print each delivery of the job as the receiver answers it, and each new status, until it has finished."""
    shown_requests = 0
    last_status = ""

    def show_new_deliveries() -> None:
        nonlocal shown_requests
        deliveries = tour.webhooks.requests_with_key(job_id)
        for request in deliveries[shown_requests:]:
            shown_requests += 1
            line = f"delivery {shown_requests} answered {request.status}"
            if shown_requests > 1:
                waited = (request.arrived_at - deliveries[shown_requests - 2].arrived_at).total_seconds()
                line += f", {waited:.2f}s after delivery {shown_requests - 1}"
            tour.show("receiver", line)

    def finished() -> dict[str, Any] | None:
        nonlocal last_status
        show_new_deliveries()
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] != last_status:
            last_status = job["status"]
            attempts = f", attempts {job['attempts']}" if "attempts" in job else ""
            tour.show("GET", f"{job['status']} ({job['backend_status']}){attempts}")
        return job if job["status"] in FINISHED else None

    job = wait_until(finished, timeout=timeout, what=f"job {job_id} to finish", seen=lambda: last_status)
    show_new_deliveries()  # none, unless one arrived after the job's status was read
    return job
