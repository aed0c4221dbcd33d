"""The webhook receiver fails on purpose, chosen by the path, and records every answer."""

from __future__ import annotations

import threading

import httpx

from tutorial.webhooks import WebhookReceiver


def post(url: str, key: str | None = None, body: object = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return httpx.post(url, json=body if body is not None else {"type": "test"}, headers=headers, timeout=10)


def test_webhook_and_any_other_path_answer_200_and_are_recorded(webhook_receiver: WebhookReceiver) -> None:
    base = webhook_receiver.url.removesuffix("/webhook")
    first = post(webhook_receiver.url, key="k-1", body={"a": 1})
    second = httpx.put(f"{base}/hooks/orders?x=1", content=b"raw", timeout=10)
    near_miss = post(f"{webhook_receiver.url}/status-report")

    assert (first.status_code, first.json()) == (200, {"received": True})
    assert (second.status_code, near_miss.status_code) == (200, 200)
    one, two, _ = webhook_receiver.requests
    assert (one.method, one.path, one.json(), one.status, one.idempotency_key) == (
        "POST",
        "/webhook",
        {"a": 1},
        200,
        "k-1",
    )
    assert one.headers["Content-Type"] == "application/json"
    assert (two.method, two.path, two.body, two.status, two.idempotency_key) == (
        "PUT",
        "/hooks/orders?x=1",
        b"raw",
        200,
        None,
    )
    webhook_receiver.wait_for_event("answered", 3)
    assert webhook_receiver.count("arrived") == 3


def test_a_flaky_path_fails_the_first_deliveries_of_each_idempotency_key(webhook_receiver: WebhookReceiver) -> None:
    url = webhook_receiver.flaky_url(2)
    assert url == f"{webhook_receiver.url}/flaky/2"

    answers = [post(url, key="order-1") for _ in range(4)]
    other_key = post(url, key="order-2")

    assert [answer.status_code for answer in answers] == [503, 503, 200, 200]
    assert answers[0].json()["error"] == "failing on purpose: delivery 1, the first 2 fail"
    assert "Retry-After" not in answers[0].headers
    assert other_key.status_code == 503, "each Idempotency-Key counts on its own"
    assert webhook_receiver.statuses("order-1") == [503, 503, 200, 200]
    assert webhook_receiver.statuses("order-2") == [503]
    assert len(webhook_receiver.requests_with_key("order-1")) == 4


def test_the_idempotency_key_header_is_found_in_any_letter_case(webhook_receiver: WebhookReceiver) -> None:
    url = webhook_receiver.flaky_url(1)
    statuses = [
        httpx.post(url, json={}, headers={name: "same-key"}, timeout=10).status_code
        for name in ("idempotency-key", "IDEMPOTENCY-KEY")
    ]
    assert statuses == [503, 200]
    assert webhook_receiver.statuses("same-key") == [503, 200]


def test_requests_without_an_idempotency_key_count_per_path(webhook_receiver: WebhookReceiver) -> None:
    flaky_one, flaky_two = webhook_receiver.flaky_url(1), webhook_receiver.flaky_url(2)

    statuses = [post(url).status_code for url in (flaky_one, flaky_one, flaky_two, flaky_two, flaky_two)]

    assert statuses == [503, 200, 503, 503, 200]
    assert [request.idempotency_key for request in webhook_receiver.requests] == [None] * 5


def test_the_same_key_on_another_flaky_path_counts_afresh(webhook_receiver: WebhookReceiver) -> None:
    assert post(webhook_receiver.flaky_url(1), key="k").status_code == 503
    assert post(webhook_receiver.flaky_url(1), key="k").status_code == 200
    assert post(webhook_receiver.flaky_url(3), key="k").status_code == 503


def test_a_status_path_always_answers_that_status(webhook_receiver: WebhookReceiver) -> None:
    down = [post(webhook_receiver.status_url(500), key="k").status_code for _ in range(3)]
    refused = post(webhook_receiver.status_url(400), key="bad")
    created = post(webhook_receiver.status_url(201))

    assert down == [500, 500, 500]
    assert webhook_receiver.statuses("k") == [500, 500, 500]
    assert (refused.status_code, refused.json()["error"]) == (400, "answering 400 on purpose")
    assert (created.status_code, created.json()) == (201, {"received": True})


def test_retry_after_rides_along_on_failing_answers_only(webhook_receiver: WebhookReceiver) -> None:
    too_many = post(webhook_receiver.status_url(429, retry_after=1))
    flaky_url = webhook_receiver.flaky_url(1, retry_after=2)
    flaky_failure, flaky_success = post(flaky_url, key="k"), post(flaky_url, key="k")
    ok_with_retry_after = post(webhook_receiver.status_url(200, retry_after=5))

    assert (too_many.status_code, too_many.headers["Retry-After"]) == (429, "1")
    assert webhook_receiver.requests[0].path.endswith("/webhook/status/429?retry_after=1")
    assert (flaky_failure.status_code, flaky_failure.headers["Retry-After"]) == (503, "2")
    assert flaky_success.status_code == 200
    assert "Retry-After" not in flaky_success.headers
    assert "Retry-After" not in ok_with_retry_after.headers


def test_a_flaky_path_can_fail_with_another_status(webhook_receiver: WebhookReceiver) -> None:
    url = webhook_receiver.flaky_url(1, status=429, retry_after=1)
    assert url == f"{webhook_receiver.url}/flaky/1?status=429&retry_after=1"

    failure, success = post(url, key="k"), post(url, key="k")

    assert (failure.status_code, failure.headers["Retry-After"]) == (429, "1")
    assert success.status_code == 200


def test_a_malformed_failure_path_answers_404_and_says_which_forms_exist(webhook_receiver: WebhookReceiver) -> None:
    paths = ["/status/abc", "/status/99", "/flaky", "/flaky/2?status=200", "/flaky/x"]
    answers = [post(webhook_receiver.url + path) for path in paths]

    assert [answer.status_code for answer in answers] == [404] * len(paths)
    assert all("/webhook/flaky/<n>" in answer.json()["error"] for answer in answers)
    assert [request.status for request in webhook_receiver.requests] == [404] * len(paths)


def test_a_held_request_gets_its_failing_answer_after_release(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.hold()
    statuses: list[int] = []
    thread = threading.Thread(target=lambda: statuses.append(post(webhook_receiver.flaky_url(1), key="k").status_code))
    thread.start()
    webhook_receiver.wait_for_event("held")

    assert statuses == []
    assert webhook_receiver.statuses("k") == [503], "the answer is decided, and recorded, on arrival"
    webhook_receiver.release()
    thread.join(timeout=10)
    assert statuses == [503]
    webhook_receiver.wait_for_event("answered")


def test_a_receiver_told_to_fail_fails_on_every_path_until_it_is_healed() -> None:
    with WebhookReceiver() as receiver:
        receiver.fail_first(2)
        statuses = [
            httpx.post(receiver.url, headers={"Idempotency-Key": "a"}, timeout=10).status_code for _ in range(3)
        ]
        other_key = httpx.post(receiver.url, headers={"Idempotency-Key": "b"}, timeout=10).status_code
        receiver.fail_always(500)
        down = httpx.post(f"{receiver.url}/anything", headers={"Idempotency-Key": "a"}, timeout=10).status_code
        receiver.heal()
        healed = httpx.post(receiver.url, headers={"Idempotency-Key": "a"}, timeout=10).status_code

    assert statuses == [503, 503, 200]
    assert other_key == 503
    assert (down, healed) == (500, 200)
