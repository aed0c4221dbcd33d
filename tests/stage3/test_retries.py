"""Retries: what may pass next time is retried with backoff and jitter; what cannot, fails at once."""

from __future__ import annotations

import importlib

import httpx
import pytest

from tests.celery_stage import CeleryStage
from tests.job_api import enqueue, wait_for_status
from tests.stage3.conftest import MAX_RETRIES
from tutorial.mail import SmtpSink
from tutorial.processes import free_port
from tutorial.webhooks import WebhookReceiver

EVENT = {"type": "user.created", "payload": {"user_id": 42}}


def test_a_flaky_webhook_succeeds_on_the_third_attempt_with_one_idempotency_key(
    stage: CeleryStage, client: httpx.Client, receiver: WebhookReceiver, point_webhooks_at
) -> None:
    point_webhooks_at(receiver.flaky_url(2))  # 503, 503, then 200
    status_url = enqueue(client, "/events", EVENT)
    job_id = status_url.removeprefix("/jobs/")

    with stage.worker():
        done = wait_for_status(client, status_url, "succeeded")

    assert done["attempts"] == 3
    assert done["result"] == {"status_code": 200}
    assert [request.idempotency_key for request in receiver.requests] == [job_id] * 3
    assert receiver.statuses(job_id) == [503, 503, 200]
    assert all(request.json() == EVENT for request in receiver.requests)


def test_a_job_waiting_for_its_next_attempt_is_retrying_with_its_attempts_and_last_error(
    stage: CeleryStage, client: httpx.Client, receiver: WebhookReceiver, point_webhooks_at
) -> None:
    # One failure with Retry-After: 1, honoured: the job waits 1 s for its second attempt.
    point_webhooks_at(receiver.flaky_url(1, retry_after=1))
    status_url = enqueue(client, "/events", EVENT)

    with stage.worker():
        retrying = wait_for_status(client, status_url, "retrying")
        done = wait_for_status(client, status_url, "succeeded")

    assert retrying["backend_status"] == "RETRY"
    assert retrying["attempts"] == 1
    assert (
        retrying["error"] == f"WebhookFailed: {receiver.flaky_url(1, retry_after=1)} answered 503 Service Unavailable"
    )
    assert done["attempts"] == 2
    first, second = receiver.requests
    waited = (second.arrived_at - first.arrived_at).total_seconds()
    assert waited >= 1, f"the second attempt came {waited:.2f}s after the first, before Retry-After allowed"


def test_retry_after_is_capped_at_the_backoff_maximum(stage: CeleryStage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stage.settings, "retry_backoff_max_seconds", 30)
    asks = httpx.Response(429, headers={"Retry-After": "3600"})
    work = importlib.import_module(".work", stage.tasks.__package__)  # the plain work the tasks call
    assert work.retry_after(asks) == 30
    assert work.retry_after(httpx.Response(503, headers={"Retry-After": "7"})) == 7
    assert work.retry_after(httpx.Response(500, headers={"Retry-After": "7"})) is None


def test_the_backoff_grows_exponentially_with_full_jitter_up_to_its_maximum(
    stage: CeleryStage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage.settings, "retry_backoff_seconds", 2)
    monkeypatch.setattr(stage.settings, "retry_backoff_max_seconds", 300)
    for retries, ceiling in [(0, 2), (1, 4), (3, 16), (7, 256), (8, 300), (20, 300)]:
        waits = [stage.tasks.backoff_seconds(retries) for _ in range(200)]
        assert all(0 <= wait <= ceiling for wait in waits), (retries, max(waits))
        # Full jitter: anywhere in [0, ceiling], not bunched at the top (no two jobs in step).
        assert min(waits) < ceiling / 4 and max(waits) > ceiling * 3 / 4, (retries, min(waits), max(waits))


@pytest.mark.parametrize("status", [400, 422])
def test_a_client_error_fails_at_once_without_a_retry(
    stage: CeleryStage, client: httpx.Client, receiver: WebhookReceiver, point_webhooks_at, status: int
) -> None:
    point_webhooks_at(receiver.status_url(status))
    status_url = enqueue(client, "/events", EVENT)

    with stage.worker():
        failed = wait_for_status(client, status_url, "failed")

    assert failed["attempts"] == 1
    assert failed["error"].startswith(f"WebhookFailed: {receiver.status_url(status)} answered {status} ")
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 501, 507])
def test_a_retryable_status_is_retried_until_the_retries_are_used_up(
    stage: CeleryStage, client: httpx.Client, receiver: WebhookReceiver, point_webhooks_at, status: int
) -> None:
    point_webhooks_at(receiver.status_url(status))
    status_url = enqueue(client, "/events", EVENT)

    with stage.worker():
        failed = wait_for_status(client, status_url, "failed")

    assert failed["attempts"] == MAX_RETRIES + 1
    assert len(receiver.requests) == MAX_RETRIES + 1


def test_a_receiver_that_does_not_answer_in_time_is_retried(
    stage: CeleryStage,
    client: httpx.Client,
    receiver: WebhookReceiver,
    point_webhooks_at,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stage.settings, "webhook_timeout_seconds", 1)
    point_webhooks_at(receiver.url)
    receiver.hold()  # each request arrives and gets no answer: the attempt times out
    status_url = enqueue(client, "/events", EVENT)
    job_id = status_url.removeprefix("/jobs/")

    with stage.worker():
        receiver.wait_for_requests(2)  # the first attempt timed out, and a second one came
        receiver.release()  # the receiver answers again, the held request too
        done = wait_for_status(client, status_url, "succeeded")

    # The second attempt gets its 200 unless it too timed out before the release (a busy machine).
    assert done["attempts"] == len(receiver.requests) >= 2
    assert [request.idempotency_key for request in receiver.requests] == [job_id] * done["attempts"]


def test_an_unreachable_receiver_is_retried_too(stage: CeleryStage, client: httpx.Client, point_webhooks_at) -> None:
    point_webhooks_at(f"http://127.0.0.1:{free_port()}/webhook")
    status_url = enqueue(client, "/events", EVENT)

    with stage.worker():
        failed = wait_for_status(client, status_url, "failed")

    assert failed["attempts"] == MAX_RETRIES + 1
    assert failed["error"].startswith("ConnectError: ")


def test_the_welcome_email_is_retried_while_the_mail_server_is_down(
    stage: CeleryStage, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setattr(stage.settings, "smtp_host", "127.0.0.1")
    monkeypatch.setattr(stage.settings, "smtp_port", port)
    # Each wait 1 s, long enough to see the job wait: with full jitter a wait may be 0 s, and all
    # three attempts could fail before the test saw one retry (seen once in CI).
    monkeypatch.setattr(stage.tasks, "backoff_seconds", lambda retries: 1.0)
    status_url = enqueue(client, "/users/7/welcome")

    with stage.worker():
        retrying = wait_for_status(client, status_url, "retrying")
        assert retrying["error"].startswith("ConnectionRefusedError: ")
        with SmtpSink(port=port) as mail:  # the mail server comes back
            done = wait_for_status(client, status_url, "succeeded", timeout=15)
            (message,) = mail.wait_for_messages(1)

    assert done["attempts"] >= 2
    assert message.rcpt_tos == ["user7@example.com"]
