"""Dead letters: a job that failed for good is kept, listed, replayed once, or deleted."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from tests.celery_stage import CeleryStage, Queues
from tests.conftest import RunningApi
from tests.job_api import enqueue, wait_for_status
from tests.stage3.conftest import MAX_RETRIES
from tutorial.processes import free_port
from tutorial.webhooks import WebhookReceiver

EVENT = {"type": "invoice.paid", "payload": {"invoice": 7}}
# The stages that keep dead letters, all in database 0 by default: a learner runs them one after the other.
STAGES_WITH_DEAD_LETTERS = ("stage3_retries", "stage4_rq_dramatiq", "stage5_monitoring")


def fail_for_good(stage: CeleryStage, client: httpx.Client, *events: dict) -> list[str]:
    """Post events to a failing receiver, one after the other, each until it has failed for good."""
    job_ids = []
    with stage.worker():
        for event in events or [EVENT]:
            status_url = enqueue(client, "/events", event)
            wait_for_status(client, status_url, "failed")
            job_ids.append(status_url.removeprefix("/jobs/"))
    return job_ids


def a_letter(task: str, args: list) -> dict:
    """A dead letter as the stages write it."""
    failed_at = datetime.now(UTC).isoformat(timespec="seconds")
    return {
        "job_id": str(uuid.uuid4()),
        "task": task,
        "args": args,
        "error": "WebhookFailed: ...",
        "attempts": 3,
        "failed_at": failed_at,
    }


def keep_as_this_stage_does(stage_package: str, letter: dict) -> None:
    """Write a dead letter where this stage's own code keeps its letters."""
    importlib.import_module(f"{stage_package}.dead_letters").put_back_dead_letter(letter)


def listed_job_ids(client: httpx.Client) -> list[str]:
    response = client.get("/dead-letters")
    assert response.status_code == 200, response.text
    return [letter["job_id"] for letter in response.json()]


def test_no_dead_letter_yet_is_an_empty_list(client: httpx.Client) -> None:
    response = client.get("/dead-letters")

    assert (response.status_code, response.json()) == (200, [])


def test_the_dead_letters_of_the_other_stages_on_the_same_redis_are_not_listed_replayed_or_deleted_here(
    stage: CeleryStage, client: httpx.Client, queues: Queues
) -> None:
    # Stage 3 as it was (keys without a stage's name), and the other stages as they are.
    prefixes = ["", *(f"{name}:" for name in STAGES_WITH_DEAD_LETTERS if name != stage.celery_app.main)]
    theirs = {}
    for prefix in prefixes:
        letter = a_letter("stage3_retries.tasks.generate_report", [[1, 2], True])
        theirs[letter["job_id"]] = (f"{prefix}dead-letters", f"{prefix}dead-letter:{letter['job_id']}")
        queues.redis.set(f"{prefix}dead-letter:{letter['job_id']}", json.dumps(letter))
        queues.redis.zadd(f"{prefix}dead-letters", {letter["job_id"]: datetime.now(UTC).timestamp()})

    assert listed_job_ids(client) == []
    for job_id in theirs:
        assert client.post(f"/dead-letters/{job_id}/replay").status_code == 404
        assert client.delete(f"/dead-letters/{job_id}").status_code == 404
    for job_id, (index, key) in theirs.items():  # still there, for the stage that wrote them
        assert queues.redis.zscore(index, job_id) is not None
        assert queues.redis.exists(key)


def test_a_dead_letter_of_a_task_this_app_does_not_have_is_409_naming_it_and_is_kept(
    stage: CeleryStage, stage_package: str, client: httpx.Client
) -> None:
    letter = a_letter("stage2_celery.tasks.add", [2, 3])  # another app's task, or one renamed since
    keep_as_this_stage_does(stage_package, letter)

    response = client.post(f"/dead-letters/{letter['job_id']}/replay")

    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"Dead letter {letter['job_id']} is a job of stage2_celery.tasks.add, a task this app cannot run: "
        "the letter is from another app, or the task was renamed since. It is kept: replay it where that task is, "
        "or delete it."
    )
    assert listed_job_ids(client) == [letter["job_id"]]
    assert client.delete(f"/dead-letters/{letter['job_id']}").status_code == 204


def test_a_replay_that_the_broker_refuses_is_503_and_keeps_the_letter(
    stage: CeleryStage,
    stage_package: str,
    stage_env: dict[str, str],
    start_api: Callable[..., RunningApi],
    client: httpx.Client,
) -> None:
    letter = a_letter(f"{stage_package}.tasks.add", [2, 3])
    keep_as_this_stage_does(stage_package, letter)
    # The letters and results in the stage's Redis, as usual; the jobs go to a broker that is down.
    broker = f"redis://127.0.0.1:{free_port()}/0"
    api = start_api(
        f"{stage_package}.main:app",
        **{
            **stage_env,
            "REDIS_URL": broker,
            "RESULT_BACKEND_URL": stage_env["REDIS_URL"],
            "REDIS_TIMEOUT_SECONDS": "1.5",
        },
    )

    with httpx.Client(base_url=api.base_url, timeout=5) as cut_off:
        response = cut_off.post(f"/dead-letters/{letter['job_id']}/replay")

    assert response.status_code == 503
    assert response.json()["detail"].startswith(f"The job queue (Redis at {broker}) is not reachable")
    assert listed_job_ids(client) == [letter["job_id"]]
    assert client.delete(f"/dead-letters/{letter['job_id']}").status_code == 204


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
