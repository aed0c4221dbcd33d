"""The whole monitored system as `honcho -f stage5_monitoring/Procfile start` runs it: the API, a worker
per queue, beat and Flower, read through their real endpoints and logs after real jobs.

The processes start once for this module (about 5 s) and its tests share them; each test makes
jobs of its own and compares counters before and after them.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
import yaml

from tests.job_api import enqueue, wait_for_status
from tests.procfile import VENV_BIN, procfile_env
from tests.stage5.conftest import (
    CREDENTIALS,
    QUEUE_NAMES,
    STAGE,
    StageQueues,
    metric_samples,
    needs_promtool,
    value,
)
from tutorial.mail import SmtpSink
from tutorial.processes import REPO_ROOT, ManagedProcess, free_port, wait_for_exit
from tutorial.waiting import wait_until
from tutorial.webhooks import WebhookReceiver

# Its tests share one whole system, started once: one test process runs them all (tests/conftest.py).
pytestmark = pytest.mark.together

RATE_LIMIT = "5/s"
PROCESS_TYPES = ("api", "worker_emails", "worker_reports", "worker_integrations", "beat", "flower")
WEBHOOK = f"{STAGE}.tasks.deliver_webhook"


@dataclass
class System:
    honcho: ManagedProcess
    api: httpx.Client
    flower: httpx.Client
    receiver: WebhookReceiver
    mail: SmtpSink

    def lines_of(self, process_type: str) -> list[dict]:
        """The JSON log lines one process printed (honcho prefixes each with its time and name)."""
        prefix = re.compile(rf"^\d\d:\d\d:\d\d {re.escape(process_type)}\.1\s+\| (\{{.*\}})$")
        return [json.loads(match[1]) for line in self.honcho.output().splitlines() if (match := prefix.match(line))]


@pytest.fixture(scope="module")
def system(stage_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    log_dir = tmp_path_factory.mktemp("stage5-system")
    api_port, flower_port = free_port(), free_port()
    with SmtpSink() as mail, WebhookReceiver() as receiver:
        env = procfile_env(
            {
                **stage_env,
                "SMTP_HOST": mail.host,
                "SMTP_PORT": str(mail.port),
                "WEBHOOK_URL": receiver.url,
                "WEBHOOK_RATE_LIMIT": RATE_LIMIT,
                "FLOWER_PORT": str(flower_port),
                "FLOWER_BASIC_AUTH": ":".join(CREDENTIALS),
            }
        )
        args = [f"{VENV_BIN}/honcho", "-f", f"{STAGE}/Procfile", "start", "-p", str(api_port)]
        with (
            ManagedProcess("honcho", args, env=env, log_dir=log_dir) as honcho,
            httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=10) as api,
            httpx.Client(base_url=f"http://127.0.0.1:{flower_port}", timeout=10) as flower,
        ):
            honcho.wait_for_http(f"{api.base_url}/health", timeout=30)
            honcho.wait_for_http(f"{flower.base_url}/healthcheck", timeout=30)
            wait_until(
                lambda: honcho.output().count(" ready.") == 3, timeout=30, what="three workers", seen=honcho.describe
            )
            yield System(honcho, api, flower, receiver, mail)
            honcho.popen.send_signal(signal.SIGINT)  # Ctrl-C
            wait_for_exit(honcho, timeout=20)
        with redis.Redis.from_url(stage_env["REDIS_URL"]) as database:
            database.flushdb()


@pytest.fixture(autouse=True)
def queues(stage_env: dict[str, str]) -> Iterator[StageQueues]:
    """As in conftest.py, but without flushing the database: the running system keeps its state there."""
    with redis.Redis.from_url(stage_env["REDIS_URL"]) as database:
        queues = StageQueues(database)
        yield queues
        assert (queues.waiting(), queues.unacknowledged()) == (0, 0), "the test left jobs behind"


def test_honcho_runs_every_process_and_health_counts_one_worker_per_queue(system: System) -> None:
    def every_queue_has_its_worker() -> dict | None:
        health = system.api.get("/health").json()
        return health if set(health["workers"].values()) == {1} else None

    health = wait_until(every_queue_has_its_worker, timeout=10, what="a worker on every queue")

    assert health == {"status": "ok", "redis": "ok", "workers": dict.fromkeys(QUEUE_NAMES, 1)}
    output = system.honcho.output()
    for process_type in PROCESS_TYPES:
        assert re.search(rf"^\d\d:\d\d:\d\d {process_type}\.1\s+\| ", output, re.MULTILINE), process_type
    # Flower listens on loopback only, unless FLOWER_ADDRESS says otherwise.
    assert f"Visit me at http://127.0.0.1:{system.flower.base_url.port}" in output


def test_flower_asks_for_credentials_except_at_its_own_metrics_and_healthcheck(system: System) -> None:
    for path in ("/", "/tasks", "/api/workers", "/api/tasks", "/broker"):
        assert system.flower.get(path).status_code == 401, path
        assert system.flower.get(path, auth=(CREDENTIALS[0], "wrong")).status_code == 401, path
        assert system.flower.get(path, auth=CREDENTIALS).status_code == 200, path
    # What the README warns about: basic auth does not cover these two, hence loopback by default.
    assert system.flower.get("/metrics").status_code == 200
    assert system.flower.get("/healthcheck").text == "OK"


def test_flower_lists_the_running_workers_with_their_queues_and_the_tasks_they_ran(system: System) -> None:
    welcome = enqueue(system.api, "/users/5/welcome")
    report = enqueue(system.api, "/jobs/report", {"rows": [1, 2]})
    job_ids = {wait_for_status(system.api, url, "succeeded", timeout=20)["job_id"] for url in (welcome, report)}

    def queues_of_each_worker() -> dict[str, list[str]]:
        # refresh=1: Flower asks the workers (a broadcast), and lists those that answer within a second.
        # On a busy machine a worker may be listed before its queues are (no "active_queues" yet): ask again.
        workers = system.flower.get("/api/workers?refresh=1", auth=CREDENTIALS).json()
        return {
            name.split("@")[0]: sorted(q["name"] for q in info.get("active_queues", []))
            for name, info in workers.items()
        }

    expected = {"emails": ["emails"], "reports": ["default", "reports"], "integrations": ["integrations"]}
    wait_until(lambda: queues_of_each_worker() == expected, timeout=10, what="Flower to list the three workers")

    def tasks_seen() -> dict | None:
        tasks = system.flower.get("/api/tasks", auth=CREDENTIALS).json()
        return tasks if job_ids <= {job_id for job_id, task in tasks.items() if task["state"] == "SUCCESS"} else None

    tasks = wait_until(tasks_seen, timeout=10, what="Flower to know both jobs as succeeded")
    ran = {(tasks[job_id]["name"], tasks[job_id]["worker"].split("@")[0]) for job_id in job_ids}
    assert ran == {(f"{STAGE}.tasks.send_welcome_email", "emails"), (f"{STAGE}.tasks.generate_report", "reports")}


def test_webhook_deliveries_start_no_faster_than_the_rate_limit(system: System) -> None:
    # 5/s per worker, and a bucket of one: 8 deliveries need at least 7 / 5 s = 1.4 s, so more than 1 s.
    system.receiver.clear()
    urls = [enqueue(system.api, "/events", {"type": "order.paid", "payload": {"n": n}}) for n in range(8)]
    for url in urls:
        wait_for_status(system.api, url, "succeeded", timeout=20)

    arrivals = sorted(request.arrived_at for request in system.receiver.requests)
    assert len(arrivals) == 8
    spread = (arrivals[-1] - arrivals[0]).total_seconds()
    assert spread >= 1, f"8 deliveries within {spread:.2f} s: more than 5 in some second"


def test_flower_metrics_count_each_task_outcome_and_its_runtime(system: System) -> None:
    before = metric_samples(system.flower.get("/metrics").text)
    system.receiver.fail_first(1)  # each delivery fails once (503), then succeeds
    retried = enqueue(system.api, "/events", {"type": "a.retried", "payload": {}})
    wait_for_status(system.api, retried, "succeeded", timeout=20)
    system.receiver.fail_always(400)  # a permanent refusal: no retry
    failed = enqueue(system.api, "/events", {"type": "a.failed", "payload": {}})
    wait_for_status(system.api, failed, "failed", timeout=20)
    system.receiver.heal()

    def counted() -> dict | None:
        after = metric_samples(system.flower.get("/metrics").text)
        return after if value(after, "flower_events_total", task=WEBHOOK, type="task-failed") > 0 else None

    after = wait_until(counted, timeout=10, what="Flower to count the failure")
    change = {
        kind: value(after, "flower_events_total", task=WEBHOOK, type=kind)
        - value(before, "flower_events_total", task=WEBHOOK, type=kind)
        for kind in ("task-received", "task-started", "task-retried", "task-succeeded", "task-failed")
    }
    assert change == {"task-received": 3, "task-started": 3, "task-retried": 1, "task-succeeded": 1, "task-failed": 1}
    runtimes = value(after, "flower_task_runtime_seconds_count", task=WEBHOOK) - value(
        before, "flower_task_runtime_seconds_count", task=WEBHOOK
    )
    assert runtimes == 1, "Flower times the successful run only"
    # Flower's `worker` label names the worker process (-n integrations@%h): the alert rules sum it away.
    workers = {dict(labels)["worker"] for name, labels in after if name == "flower_events_total"}
    assert f"integrations@{worker_host(system)}" in workers


def worker_host(system: System) -> str:
    """The host part of the workers' names (-n emails@%h), as they printed it."""
    return re.search(r"emails@(\S+) ready\.", system.honcho.output())[1]


def test_the_api_metrics_count_requests_by_route_and_jobs_by_task_and_queue(system: System) -> None:
    before = metric_samples(system.api.get("/metrics").text)
    report = enqueue(system.api, "/jobs/report", {"rows": [1], "priority": "high"})
    wait_for_status(system.api, report, "succeeded", timeout=20)
    assert system.api.get("/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6").status_code == 404
    assert system.api.get("/no/such/path").status_code == 404

    after = metric_samples(system.api.get("/metrics").text)

    def change(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    report_task = f"{STAGE}.tasks.generate_report"
    assert change("jobs_enqueued_total", task=report_task, queue="reports") == 1
    assert change("http_requests_total", handler="/jobs/report", method="POST", status="202") == 1
    assert change("http_requests_total", handler="/jobs/{job_id}", method="GET", status="404") == 1
    assert change("http_request_duration_seconds_count", handler="/jobs/{job_id}", status="404") == 1
    # A path with no route is counted as "none": a raw path as a label would make a series per URL.
    assert change("http_requests_total", handler="none", status="404") == 1
    handlers = {dict(labels).get("handler") for name, labels in after if name == "http_requests_total"}
    assert not any(re.search(r"[0-9a-f]{8}-", handler) for handler in handlers), handlers
    assert value(after, "jobs_task_queue_info", task=report_task, queue="reports") == 1
    assert value(after, "jobs_redis_up") == 1
    assert {queue: value(after, "jobs_queue_workers", queue=queue) for queue in QUEUE_NAMES} == dict.fromkeys(
        QUEUE_NAMES, 1
    )


@needs_promtool
def test_both_metrics_endpoints_pass_promtool_check_metrics(system: System) -> None:
    for endpoint in (system.api, system.flower):
        text = endpoint.get("/metrics").text
        checked = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
        )
        assert checked.returncode == 0, f"{endpoint.base_url}: {checked.stdout}{checked.stderr}"


def test_a_request_id_follows_the_job_from_the_api_log_into_the_worker_log(system: System) -> None:
    response = system.api.post("/users/6/welcome", headers={"X-Request-ID": "abc"})
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "abc"
    job_id = response.json()["job_id"]
    wait_for_status(system.api, response.json()["status_url"], "succeeded", timeout=20)

    def worker_line() -> dict | None:
        lines = [line for line in system.lines_of("worker_emails") if line.get("task_id") == job_id]
        return next((line for line in lines if "succeeded" in line["message"]), None)

    in_worker = wait_until(worker_line, timeout=10, what="the worker's line for the job")
    in_api = [line for line in system.lines_of("api") if line.get("job_id") == job_id]

    assert [(line["message"], line["request_id"]) for line in in_api] == [("job enqueued", "abc")]
    assert in_worker["request_id"] == "abc"
    assert (in_worker["task"], in_worker["queue"], in_worker["attempt"]) == (
        f"{STAGE}.tasks.send_welcome_email",
        "emails",
        1,
    )
    assert {"time", "level", "logger", "message"} <= set(in_worker)


def test_the_alert_rules_read_metrics_that_the_api_and_flower_really_serve(system: System) -> None:
    welcome = enqueue(system.api, "/users/4/welcome")
    wait_for_status(system.api, welcome, "succeeded", timeout=20)
    rules = yaml.safe_load((REPO_ROOT / STAGE / "alerts.yml").read_text())
    exprs = " ".join(rule["expr"] for group in rules["groups"] for rule in group["rules"])
    used = set(re.findall(r"(?<![\w:])((?:jobs|flower)_\w+)(?![\w:])", exprs))

    def served() -> set[str]:
        names = {name for name, _ in metric_samples(system.api.get("/metrics").text)}
        return names | {name for name, _ in metric_samples(system.flower.get("/metrics").text)}

    wait_until(lambda: used <= served(), timeout=10, what="every metric the rules read", seen=lambda: used - served())
    assert used == {
        "flower_events_total",
        "jobs_task_queue_info",
        "jobs_waiting",
        "jobs_queue_workers",
        "jobs_redis_up",
    }
