"""Idempotency-Key: a client may repeat a POST (a timeout, a retry) without making a second job."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.celery_stage import CeleryStage, Queues
from tests.job_api import wait_for_status

BODY = {"x": 2, "y": 3}


def post_add(client: httpx.Client, key: str, body: dict = BODY) -> httpx.Response:
    return client.post("/jobs/add", json=body, headers={"Idempotency-Key": key})


def test_the_same_key_and_body_answer_the_same_job_and_make_no_second_one(
    stage: CeleryStage, client: httpx.Client, queues: Queues
) -> None:
    first = post_add(client, "order-42")
    again = post_add(client, "order-42")

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert queues.waiting() == 1
    with stage.worker():
        wait_for_status(client, first.json()["status_url"], "succeeded")


def test_the_same_key_with_another_body_is_422_saying_so(
    stage: CeleryStage, client: httpx.Client, queues: Queues
) -> None:
    first = post_add(client, "order-43")
    other = post_add(client, "order-43", {"x": 2, "y": 4})

    assert other.status_code == 422
    (error,) = other.json()["detail"]
    assert error["loc"] == ["header", "idempotency-key"]
    assert error["msg"] == "This Idempotency-Key was used with another request: use a new key for a new request."
    assert queues.waiting() == 1
    with stage.worker():
        wait_for_status(client, first.json()["status_url"], "succeeded")


def test_the_same_key_on_another_endpoint_is_another_request(client: httpx.Client, queues: Queues) -> None:
    assert post_add(client, "k-1").status_code == 202
    response = client.post("/users/3/welcome", headers={"Idempotency-Key": "k-1"})

    assert response.status_code == 422
    queues.redis.delete("celery")  # the add was never meant to run


@pytest.mark.parametrize("key", ["", "has space", "tab\there", "é", "x" * 256])
def test_a_key_that_is_not_1_to_255_visible_characters_is_422_and_enqueues_nothing(
    client: httpx.Client, queues: Queues, key: str
) -> None:
    response = client.post("/jobs/add", json=BODY, headers={"Idempotency-Key": key.encode()})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
    assert queues.waiting() == 0 and queues.job_keys() == []


def test_a_key_of_255_visible_characters_is_taken(client: httpx.Client, queues: Queues) -> None:
    assert post_add(client, "~" * 255).status_code == 202
    queues.redis.delete("celery")


def test_two_requests_at_once_with_one_key_make_one_job(
    stage: CeleryStage, api_url: str, queues: Queues, client: httpx.Client
) -> None:
    start = threading.Barrier(8)
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=api_url, timeout=10) as own_client:
            start.wait(timeout=10)
            answers.append(post_add(own_client, "race-1"))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)

    assert [answer.status_code for answer in answers] == [202] * 8
    assert len({answer.json()["job_id"] for answer in answers}) == 1
    assert queues.waiting() == 1
    with stage.worker():
        wait_for_status(client, answers[0].json()["status_url"], "succeeded")


def test_a_key_is_remembered_no_longer_than_its_job_is_known(
    stage: CeleryStage, client: httpx.Client, queues: Queues
) -> None:
    job_id = post_add(client, "order-46").json()["job_id"]

    (key,) = queues.redis.scan_iter("idempotency-key:*")
    # Claimed before the job's mark was stored: with equal lifetimes, the key goes first.
    assert 0 < queues.redis.ttl(key) <= queues.redis.ttl(f"celery-task-meta-{job_id}")
    # Whatever the two settings say: a repeat must never answer the id of an expired job.
    settings = type(stage.settings)(idempotency_ttl_seconds=86400, result_expires_seconds=60)
    assert settings.idempotency_key_seconds == 60
    with stage.worker():
        wait_for_status(client, f"/jobs/{job_id}", "succeeded")
