"""Dead letters: a job that failed for good is kept, listed, replayed once, or deleted."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.celery_stage import CeleryStage
from tests.job_api import enqueue, wait_for_status
from tests.stage3.conftest import MAX_RETRIES
from tutorial.webhooks import WebhookReceiver

EVENT = {"type": "invoice.paid", "payload": {"invoice": 7}}


def fail_for_good(stage: CeleryStage, client: httpx.Client, *events: dict) -> list[str]:
    """Post events to a failing receiver, one after the other, each until it has failed for good."""
    job_ids = []
    with stage.worker():
        for event in events or [EVENT]:
            status_url = enqueue(client, "/events", event)
            wait_for_status(client, status_url, "failed")
            job_ids.append(status_url.removeprefix("/jobs/"))
    return job_ids


def test_a_dead_receiver_leaves_a_dead_letter_that_a_replay_delivers_once_the_receiver_is_fixed(
    stage: CeleryStage, client: httpx.Client, receiver: WebhookReceiver, point_webhooks_at
) -> None:
    point_webhooks_at(receiver.status_url(500))
    (job_id,) = fail_for_good(stage, client)

    (letter,) = client.get("/dead-letters").json()
    assert letter["job_id"] == job_id
    assert letter["task"] == "stage3_retries.tasks.deliver_webhook"
    assert letter["args"] == [EVENT]
    assert letter["error"] == f"WebhookFailed: {receiver.status_url(500)} answered 500 Internal Server Error"
    assert letter["attempts"] == MAX_RETRIES + 1
    assert letter["failed_at"].endswith("+00:00")

    point_webhooks_at(receiver.url)  # the receiver is fixed
    response = client.post(f"/dead-letters/{job_id}/replay")
    assert response.status_code == 202
    new_job = response.json()
    assert new_job["job_id"] != job_id
    assert response.headers["Location"] == new_job["status_url"] == f"/jobs/{new_job['job_id']}"
    with stage.worker():
        done = wait_for_status(client, new_job["status_url"], "succeeded")

    assert done["attempts"] == 1
    assert receiver.requests[-1].json() == EVENT
    assert client.get("/dead-letters").json() == []
    assert client.post(f"/dead-letters/{job_id}/replay").status_code == 404  # replayed already


def test_dead_letters_are_listed_newest_first_up_to_the_limit(
    stage: CeleryStage, client: httpx.Client, receiver: WebhookReceiver, point_webhooks_at
) -> None:
    point_webhooks_at(receiver.status_url(400))  # permanent: one attempt each
    job_ids = fail_for_good(stage, client, *[{"type": f"event.n{n}", "payload": {}} for n in range(3)])

    assert [letter["job_id"] for letter in client.get("/dead-letters").json()] == job_ids[::-1]
    assert [letter["job_id"] for letter in client.get("/dead-letters?limit=2").json()] == job_ids[:0:-1]


@pytest.mark.parametrize("limit", ["0", "101", "many"])
def test_a_limit_outside_1_to_100_is_422_naming_it(client: httpx.Client, limit: str) -> None:
    response = client.get(f"/dead-letters?limit={limit}")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


def test_a_deleted_dead_letter_is_gone_and_an_unknown_one_is_404(
    stage: CeleryStage, client: httpx.Client, receiver: WebhookReceiver, point_webhooks_at
) -> None:
    point_webhooks_at(receiver.status_url(400))
    (job_id,) = fail_for_good(stage, client)

    assert client.delete(f"/dead-letters/{job_id}").status_code == 204
    assert client.get("/dead-letters").json() == []
    assert client.delete(f"/dead-letters/{job_id}").status_code == 404
    assert client.post(f"/dead-letters/{uuid.uuid4()}/replay").status_code == 404


def test_dead_letters_survive_a_worker_restart(
    stage: CeleryStage, client: httpx.Client, receiver: WebhookReceiver, point_webhooks_at
) -> None:
    point_webhooks_at(receiver.status_url(400))
    (job_id,) = fail_for_good(stage, client)  # that worker has stopped

    with stage.worker():  # a new one
        assert [letter["job_id"] for letter in client.get("/dead-letters").json()] == [job_id]


def test_a_hard_failure_of_the_task_itself_is_a_dead_letter_too(
    stage: CeleryStage, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a retryable error: the mail server refuses the address.
    monkeypatch.setattr(stage.settings, "smtp_host", "127.0.0.1")
    status_url = enqueue(client, "/jobs/report", {"rows": [1, 2]})
    monkeypatch.setattr(stage.tasks, "process_row", lambda row: 1 / 0)
    with stage.worker():
        failed = wait_for_status(client, status_url, "failed")

    assert failed["error"] == "ZeroDivisionError: division by zero"
    (letter,) = client.get("/dead-letters").json()
    assert letter["task"] == "stage3_retries.tasks.generate_report"
    assert letter["args"] == [[1.0, 2.0], True]


def test_a_replay_repeated_with_its_idempotency_key_answers_the_same_job_and_makes_no_second_one(
    stage: CeleryStage, client: httpx.Client, receiver: WebhookReceiver, point_webhooks_at
) -> None:
    point_webhooks_at(receiver.status_url(500))
    (job_id,) = fail_for_good(stage, client)
    point_webhooks_at(receiver.url)
    replay = f"/dead-letters/{job_id}/replay"

    first = client.post(replay, headers={"Idempotency-Key": "replay-7"})
    again = client.post(replay, headers={"Idempotency-Key": "replay-7"})  # the first answer was lost
    other = client.post("/jobs/add", json={"x": 1, "y": 2}, headers={"Idempotency-Key": "replay-7"})

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert other.status_code == 422  # the key belongs to the replay
    assert client.post(replay).status_code == 404  # without the key: replayed already
    delivered_before = len(receiver.requests)
    with stage.worker():
        wait_for_status(client, first.json()["status_url"], "succeeded")
    assert len(receiver.requests) == delivered_before + 1  # one new job, one delivery
