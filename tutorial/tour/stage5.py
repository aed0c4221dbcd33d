"""Demo chapter for stage 5: a worker per queue, a priority jump, a rate limit, Flower, metrics, JSON logs.

Every process starts from its line of stage5_monitoring/Procfile (`celery ...` run as `python -m celery ...`).
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from typing import Any

import httpx
import redis

from tutorial.processes import REPO_ROOT, ManagedProcess, free_port
from tutorial.tour import Tour
from tutorial.waiting import wait_until

TITLE = "Stage 5: monitored multi-queue Celery"
STAGE = "stage5_monitoring"
# One process per worker, so that the order a worker takes the jobs in is the order they run in.
PACE = {"WORKER_CONCURRENCY": "1", "REPORT_STEP_SECONDS": "0.1", "WEBHOOK_RATE_LIMIT": "2/s"}
RECEIVED = re.compile(rf"Task {STAGE}\.tasks\.\w+\[([0-9a-f-]+)\] received")


def run(tour: Tour) -> None:
    tour.chapter(TITLE)
    tour.say(
        "Each kind of job waits in a queue of its own, and each queue has workers of its own: "
        "e-mails, reports, webhooks. Every process starts from its line of "
        f"{STAGE}/Procfile, the way honcho runs them."
    )
    tour.show("queues and results", tour.redis.url)
    api_port = free_port()
    api = f"http://127.0.0.1:{api_port}"
    tour.step("The API, and only the e-mails worker: celery ... worker -Q emails -n emails@%h")
    api_process = start_line(tour, "api", PORT=str(api_port))
    api_process.wait_for_http(f"{api}/health", timeout=30)
    tour.show("API", api)
    emails = start_line(tour, "worker_emails", ready_text=" ready.")

    with httpx.Client(base_url=api, timeout=10) as client:
        welcome = post(client, "/users/42/welcome")
        report = post(client, "/jobs/report", {"rows": [3, 1, 4]})
        sent = wait_for_job(client, welcome, ("succeeded",))
        tour.show("welcome e-mail", f"{sent['status']} in queue {sent['queue']}")
        waiting = client.get(report).json()
        tour.show("report", f"{waiting['status']} in queue {waiting['queue']}: no worker takes that queue")
        tour.show("GET /health", client.get("/health").text)

        tour.step("Two low reports, then a high one, while the report worker is away")
        lows = [post(client, "/jobs/report", {"rows": [n], "priority": "low"}) for n in (1, 2)]
        high = post(client, "/jobs/report", {"rows": [9], "priority": "high"})
        with redis.Redis.from_url(tour.redis.url, socket_timeout=5, socket_connect_timeout=5) as database:
            lists = {name: database.llen(name) for name in ("reports", "reports:3", "reports:6")}
        tour.show("Redis lists", f"{lists} (high, normal, low: 0 is served first)")
        reports = start_line(tour, "worker_reports", ready_text=" ready.")
        names = {high: "high", report: "normal", lows[0]: "low", lows[1]: "low"}
        for status_url in names:
            wait_for_job(client, status_url, ("succeeded",))
        order = [names[f"/jobs/{job_id}"] for job_id in RECEIVED.findall(reports.output())]
        tour.show("the report worker received them in this order", ", ".join(order))

        tour.step("Four webhooks, with WEBHOOK_RATE_LIMIT=2/s on the integrations worker")
        start_line(tour, "worker_integrations", ready_text=" ready.")
        delivered_before = len(tour.webhooks.requests)
        events = [post(client, "/events", {"type": "order.paid", "payload": {"n": n}}) for n in range(4)]
        for status_url in events:
            wait_for_job(client, status_url, ("succeeded",))
        arrivals = [request.arrived_at for request in tour.webhooks.requests[delivered_before:]]
        offsets = ", ".join(f"{(at - arrivals[0]).total_seconds():.2f}" for at in arrivals)
        tour.show("they arrived at (seconds)", f"{offsets}: a rate limit per worker")

        tour.step("Flower, with a password made for this tour (FLOWER_BASIC_AUTH), on loopback")
        credentials = ("demo", secrets.token_urlsafe(12))
        flower_port = free_port()
        flower_env = {"FLOWER_BASIC_AUTH": ":".join(credentials), "FLOWER_PORT": str(flower_port)}
        start_line(tour, "flower", ready_text="Visit me at", **flower_env)
        flower = f"http://127.0.0.1:{flower_port}"
        tour.show("GET /api/workers without credentials", httpx.get(f"{flower}/api/workers", timeout=10).status_code)
        for name, queues in flower_workers(flower, credentials).items():
            tour.show(f"  {name}", f"consumes {queues}")

        tour.step("X-Request-ID: demo-42 on a welcome e-mail: the id follows the job into the worker")
        response = client.post("/users/7/welcome", headers={"X-Request-ID": "demo-42"})
        tour.show("answer", f"{response.status_code}, X-Request-ID: {response.headers['X-Request-ID']}")
        job_id = response.json()["job_id"]
        wait_for_job(client, response.json()["status_url"], ("succeeded",))
        tour.show("API log", log_line(api_process, lambda line: line.get("job_id") == job_id))
        tour.show(
            "worker log",
            log_line(emails, lambda line: line.get("task_id") == job_id and "succeeded" in line["message"]),
        )

        tour.step("GET /metrics: what Prometheus reads (queue depth and workers read from Redis at each scrape)")
        for line in client.get("/metrics").text.splitlines():
            counted = line.startswith("jobs_enqueued_total{") and not line.endswith(" 0.0")
            if counted or line.startswith(("jobs_waiting{", "jobs_queue_workers{")):
                tour.show("metric", line)

    tour.say(
        "Every job waited in its own queue, a high report went first, webhooks were paced, "
        "Flower answered only with its password, and one request id was found in the logs of "
        "two processes. Alert rules for all of it: stage5_monitoring/alerts.yml."
    )


def start_line(tour: Tour, process_type: str, ready_text: str | None = None, **extra_env: str) -> ManagedProcess:
    """Start a line of the stage's Procfile (`celery ...` as `python -m celery ...`); it stops with the chapter."""
    command = procfile_lines()[process_type].replace("$PORT", extra_env.get("PORT", "$PORT"))
    program, *args = shlex.split(command)
    env = {**PACE, **extra_env}
    return tour.start_process(f"stage5-{process_type}", "-m", program, *args, ready_text=ready_text, **env)


def procfile_lines() -> dict[str, str]:
    lines = {}
    for line in (REPO_ROOT / STAGE / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            lines[name.strip()] = command.strip()
    return lines


def post(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> str:
    response = client.post(path, json=body)
    response.raise_for_status()
    return response.json()["status_url"]


def wait_for_job(client: httpx.Client, status_url: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def reached() -> dict[str, Any] | None:
        seen.append(client.get(status_url).json())
        return seen[-1] if seen[-1]["status"] in statuses else None

    return wait_until(reached, timeout=30, what=f"{status_url} to be {statuses}", seen=lambda: seen[-1:])


def flower_workers(flower: str, credentials: tuple[str, str]) -> dict[str, list[str]]:
    """{worker: [queues]} as Flower's API lists them, once all three workers have answered its broadcast."""

    def listed() -> dict[str, list[str]] | None:
        answer = httpx.get(f"{flower}/api/workers?refresh=1", auth=credentials, timeout=10).json()
        if len(answer) != 3 or not all("active_queues" in info for info in answer.values()):
            return None  # on a busy machine Flower may list a worker before its queues: ask again
        return {name: [queue["name"] for queue in info["active_queues"]] for name, info in sorted(answer.items())}

    return wait_until(listed, timeout=20, what="Flower to list the three workers")


def log_line(process: ManagedProcess, matches: Any) -> str:
    """The first JSON line of a process's log that ``matches``, shortened to what the tour shows."""

    def found() -> dict[str, Any] | None:
        for text in process.output().splitlines():
            if text.startswith("{"):
                line = json.loads(text)
                if matches(line):
                    return line
        return None

    line = wait_until(found, timeout=10, what=f"a log line of {process.name}")
    keys = ("message", "request_id", "job_id", "task_id", "queue", "attempt")
    return json.dumps({key: line[key] for key in keys if key in line})
