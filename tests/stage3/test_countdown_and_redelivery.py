"""A countdown: scheduled, then run, not earlier; and a job delivered twice sends one e-mail."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.celery_stage import CeleryStage, Queues
from tests.job_api import enqueue, job_status, wait_for_status
from tutorial.mail import SmtpSink
from tutorial.waiting import wait_until


def test_a_job_with_a_countdown_is_scheduled_until_it_is_due_then_runs_not_earlier(
    stage: CeleryStage, client: httpx.Client, queues: Queues
) -> None:
    status_url = enqueue(client, "/jobs/add", {"x": 2, "y": 3, "delay_seconds": 1})

    scheduled = job_status(client, status_url)
    assert scheduled["status"] == "scheduled"
    assert scheduled["backend_status"] == "PENDING"
    run_at = datetime.fromisoformat(scheduled["run_at"])
    with stage.worker():
        done = wait_for_status(client, status_url, "succeeded")

    assert done["result"] == 5
    finished = datetime.fromisoformat(stage.celery_app.backend.get_task_meta(done["job_id"])["date_done"])
    assert finished.replace(tzinfo=finished.tzinfo or UTC) >= run_at, "the job ran before it was due"


def test_a_countdown_job_is_queued_once_it_is_due(client: httpx.Client, queues: Queues) -> None:
    status_url = enqueue(client, "/jobs/add", {"x": 2, "y": 3, "delay_seconds": 0.01})

    queued = wait_for_status(client, status_url, "queued")

    assert "run_at" in queued
    queues.redis.delete("celery")  # no worker in this test


@pytest.mark.parametrize("delay", [-1, "soon"])
def test_a_delay_that_is_not_a_positive_number_is_422_naming_it(
    client: httpx.Client, queues: Queues, delay: object
) -> None:
    response = client.post("/jobs/add", json={"x": 2, "y": 3, "delay_seconds": delay})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "delay_seconds"]
    assert queues.waiting() == 0 and queues.job_keys() == []


def test_a_delay_is_capped_below_the_visibility_timeout_whatever_max_delay_says(
    start_api, stage_env: dict[str, str], queues: Queues
) -> None:
    # MAX_DELAY_SECONDS larger than the visibility timeout: the smaller one wins, and the app still starts.
    api = start_api("stage3_retries.main:app", **stage_env, VISIBILITY_TIMEOUT_SECONDS="60", MAX_DELAY_SECONDS="600")

    too_late = httpx.post(f"{api.base_url}/jobs/add", json={"x": 1, "y": 1, "delay_seconds": 60}, timeout=10)
    in_time = httpx.post(f"{api.base_url}/jobs/add", json={"x": 1, "y": 1, "delay_seconds": 59}, timeout=10)

    assert too_late.status_code == 422
    (error,) = too_late.json()["detail"]
    assert error["loc"] == ["body", "delay_seconds"]
    assert error["msg"] == "Input should be less than or equal to 59"
    assert in_time.status_code == 202
    queues.redis.delete("celery")


def test_a_welcome_email_delivered_twice_is_sent_once(
    stage: CeleryStage, mail_server: SmtpSink, queues: Queues
) -> None:
    # What a redelivery after a crash looks like to the worker: the same message (same id) twice.
    job_id = "7d3f0b4e-5a8c-4c1e-9a0b-2f6d8e1c3b5a"
    for _ in range(2):
        stage.tasks.send_welcome_email.apply_async((11, "user11@example.com"), task_id=job_id)
    assert queues.waiting() == 2

    with stage.worker():
        mail_server.wait_for_messages(1)
        # Both deliveries ran to the end (acks_late: acknowledged when done), yet one e-mail went out.
        wait_until(
            lambda: queues.waiting() == 0 and queues.unacknowledged() == 0,
            timeout=10,
            what="both deliveries to be done",
            seen=lambda: (queues.waiting(), queues.unacknowledged()),
        )
    assert stage.celery_app.backend.client.get(f"job-attempts:{job_id}") == b"2"

    assert len(mail_server.messages) == 1
