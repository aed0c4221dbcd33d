"""Queues and priorities: each task waits in its queue for a worker of that queue; a high report jumps the line."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest

from tests.celery_stage import CeleryStage
from tests.job_api import enqueue, job_status, wait_for_status
from tests.procfile import procfile_lines
from tests.stage5.conftest import QUEUE_NAMES, STAGE, StageQueues
from tutorial.mail import SmtpSink
from tutorial.processes import ManagedProcess

WORKER_LINES = ("worker_emails", "worker_reports", "worker_integrations")


def consumed_queues(command: str) -> list[str]:
    """The queues a `celery ... worker -Q a,b` command consumes."""
    match = re.search(r"\s-Q\s+(\S+)", command)
    assert match, f"a worker without -Q consumes every queue: {command}"
    return match.group(1).split(",")


def test_the_procfile_workers_together_consume_every_queue_each_under_its_own_name() -> None:
    lines = procfile_lines(STAGE)

    assert set(lines) == {"api", *WORKER_LINES, "beat", "flower"}
    consumed = [queue for name in WORKER_LINES for queue in consumed_queues(lines[name])]
    assert sorted(consumed) == sorted(QUEUE_NAMES), "each queue consumed by exactly one kind of worker"
    assert consumed_queues(lines["worker_reports"]) == ["reports", "default"]
    for name in WORKER_LINES:
        queue = name.removeprefix("worker_")
        assert f" -n {queue}@%h " in lines[name], f"{name} is not named after its queue"


def test_every_task_is_routed_to_its_queue_and_the_rest_to_default(stage: CeleryStage) -> None:
    router = stage.celery_app.amqp.router
    routed = {
        name.rsplit(".", 1)[1]: router.route({}, name)["queue"].name
        for name in stage.celery_app.tasks
        if name.startswith(f"{STAGE}.")
    }

    assert routed == {
        "send_welcome_email": "emails",
        "send_digest": "emails",
        "generate_report": "reports",
        "make_thumbnail": "reports",
        "deliver_webhook": "integrations",
        "add": "default",
    }


def test_a_worker_started_without_q_consumes_every_queue(stage: CeleryStage) -> None:
    # The classic surprise: the queues are declared (task_queues), so a worker without -Q takes them all.
    with stage.worker() as worker:
        consumed = sorted(queue.name for queue in worker.consumer.task_consumer.queues)

    assert consumed == sorted(QUEUE_NAMES)


def test_with_only_the_emails_worker_an_email_is_sent_while_a_report_waits_for_a_reports_worker(
    start: Callable[..., ManagedProcess], client: httpx.Client, smtp_sink: SmtpSink, queues: StageQueues
) -> None:
    start("worker_emails", " ready.")
    report = enqueue(client, "/jobs/report", {"rows": [1, 2, 3]})
    welcome = enqueue(client, "/users/7/welcome")

    sent = wait_for_status(client, welcome, "succeeded", timeout=20)
    (mail,) = smtp_sink.wait_for_messages(1)
    waiting = job_status(client, report)
    assert (sent["queue"], mail.rcpt_tos) == ("emails", ["user7@example.com"])
    assert (waiting["status"], waiting["queue"]) == ("queued", "reports")
    assert queues.waiting_in("reports") == 1, "the report waits in the list of its queue"

    start("worker_reports", " ready.")
    done = wait_for_status(client, report, "succeeded", timeout=20)
    assert (done["queue"], done["result"]["sum"]) == ("reports", 6.0)


@pytest.mark.parametrize(("priority", "key"), [("high", "reports"), (None, "reports:3"), ("low", "reports:6")])
def test_a_report_waits_in_the_list_of_its_priority_and_normal_is_the_default(
    client: httpx.Client, queues: StageQueues, priority: str | None, key: str
) -> None:
    body = {"rows": [1]} | ({"priority": priority} if priority else {})
    enqueue(client, "/jobs/report", body)

    assert {name: queues.redis.llen(name) for name in ("reports", "reports:3", "reports:6")}[key] == 1
    assert queues.waiting() == 1
    queues.drop_waiting_jobs()  # no worker in this test


@pytest.mark.parametrize("priority", ["urgent", 0, "HIGH", None])
def test_a_priority_other_than_high_normal_or_low_is_422_naming_it(
    client: httpx.Client, queues: StageQueues, priority: object
) -> None:
    response = client.post("/jobs/report", json={"rows": [1], "priority": priority})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "priority"]
    assert queues.waiting() == 0 and queues.job_keys() == []


def test_a_high_report_runs_before_the_low_ones_that_wait_behind_a_busy_worker(
    start: Callable[..., ManagedProcess], client: httpx.Client
) -> None:
    # One reports worker, one process (WORKER_CONCURRENCY=1), busy for 1.5 s with a job of its other
    # queue, "default" (a report that long would meet the tests' 1 s time limit).
    worker = start("worker_reports", " ready.", ADD_DELAY_SECONDS="1.5")
    busy = enqueue(client, "/jobs/add", {"x": 1, "y": 2})
    wait_for_status(client, busy, "started")
    lows = [enqueue(client, "/jobs/report", {"rows": [n], "priority": "low"}) for n in range(3)]
    high = enqueue(client, "/jobs/report", {"rows": [9], "priority": "high"})
    # The lows that still wait now, once the high one is queued (on a slow machine some may have run).
    waiting = [low for low in lows if job_status(client, low)["status"] == "queued"]
    assert len(waiting) >= 2, "the worker was not busy long enough to show anything: make the busy report longer"

    for status_url in [busy, *lows, high]:
        wait_for_status(client, status_url, "succeeded", timeout=20)

    # One process takes one job at a time, so the order it received them in is the order they ran in.
    received = re.findall(rf"{STAGE}\.tasks\.\w+\[([0-9a-f-]+)\] received", worker.output())
    position = {url: received.index(url.removeprefix("/jobs/")) for url in [busy, *lows, high]}
    assert position[busy] == 0
    assert all(position[high] < position[low] for low in waiting), "a waiting low report ran before the high one"


def test_the_job_status_names_the_queue_while_queued_and_once_done(stage: CeleryStage, client: httpx.Client) -> None:
    status_url = enqueue(client, "/jobs/add", {"x": 1, "y": 1})
    queued = job_status(client, status_url)

    with stage.worker():
        done = wait_for_status(client, status_url, "succeeded")

    assert (queued["status"], queued["queue"]) == ("queued", "default")
    assert (done["status"], done["queue"]) == ("succeeded", "default")
