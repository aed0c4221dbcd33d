"""The job API contract, end to end: a real API server, real Redis, a real Celery worker."""

from __future__ import annotations

import queue
import threading
import uuid

import httpx
import pytest
from celery.result import AsyncResult

from tests.celery_stage import CeleryStage, Queues
from tests.job_api import enqueue, job_status, wait_for_answer, wait_for_status
from tests.stage2.test_forgotten_worker import NOTE
from tutorial.mail import SmtpSink
from tutorial.processes import free_port


def test_a_job_waits_as_queued_until_a_worker_runs_it_then_succeeds_with_its_result(
    stage: CeleryStage, client: httpx.Client, queues: Queues, fields_of_a_finished_job: dict[str, object]
) -> None:
    status_url = enqueue(client, "/jobs/add", {"x": 2, "y": 3})

    # No worker yet: the job waits in the queue, and the API says so.
    assert queues.waiting() == 1
    job_id = status_url.removeprefix("/jobs/")
    assert job_status(client, status_url) == {
        "job_id": job_id,
        "status": "queued",
        "backend_status": "PENDING",
        "note": NOTE.format(queue="celery"),
    }
    # Its mark is Celery's own PENDING state, stored before the job was published, with the result's expiry.
    assert queues.job_keys() == [f"celery-task-meta-{job_id}".encode()]
    assert 0 < queues.redis.ttl(f"celery-task-meta-{job_id}") <= stage.settings.result_expires_seconds

    with stage.worker():
        done = wait_for_status(client, status_url, "succeeded")

    expected = {"job_id": job_id, "status": "succeeded", "backend_status": "SUCCESS", "result": 5}
    assert done == {**expected, **fields_of_a_finished_job}
    # The worker wrote the result over the mark: still one key per job, and it expires.
    assert queues.job_keys() == [f"celery-task-meta-{job_id}".encode()]
    assert 0 < queues.redis.ttl(f"celery-task-meta-{job_id}") <= stage.settings.result_expires_seconds


def test_the_welcome_email_job_is_started_while_sending_and_the_email_arrives(
    stage: CeleryStage, client: httpx.Client, mail_server: SmtpSink
) -> None:
    mail_server.hold()  # the worker's SMTP conversation will wait for the test
    status_url = enqueue(client, "/users/7/welcome")
    assert job_status(client, status_url)["status"] == "queued"

    with stage.worker():
        mail_server.wait_for_event("held")
        sending = job_status(client, status_url)
        assert (sending["status"], sending["backend_status"]) == ("started", "STARTED")
        mail_server.release()
        done = wait_for_status(client, status_url, "succeeded")

    assert "result" not in done, "send_welcome_email returns nothing, so there is no result to show"
    (mail,) = mail_server.wait_for_messages(1)
    assert mail.rcpt_tos == ["user7@example.com"]
    assert mail.subject == "Welcome!"
    assert "Hello user 7" in mail.body


def test_the_report_shows_its_progress_while_it_runs(
    stage: CeleryStage, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each row waits for the test's go, so every progress state can be seen, however busy the machine.
    rows_done: queue.Queue[float] = queue.Queue()
    go = threading.Semaphore(0)

    def process_row(row: float) -> None:
        assert go.acquire(timeout=10), "the test never let the row through"
        rows_done.put(row)

    monkeypatch.setattr(stage.tasks, "process_row", process_row)
    rows = [3, 1, 4]
    status_url = enqueue(client, "/jobs/report", {"rows": rows})

    with stage.worker():
        wait_for_status(client, status_url, "started")
        for current in range(1, len(rows)):
            go.release()
            assert rows_done.get(timeout=10) == rows[current - 1]
            answer = wait_for_answer(
                client,
                status_url,
                lambda job, row=current: job.get("progress", {}).get("current") == row,
                f"at row {current}",
            )
            assert answer["status"] == "progress"
            assert answer["progress"] == {"current": current, "total": len(rows)}
            assert answer["backend_status"] == "PROGRESS"
            # The task waits for the next go: the state stays where it is.
            assert job_status(client, status_url)["progress"]["current"] == current
        go.release()
        done = wait_for_status(client, status_url, "succeeded")

    assert done["result"] == {"rows": 3, "sum": 8.0, "mean": 8 / 3, "min": 1.0, "max": 4.0}


def test_a_job_accepted_before_the_api_restarts_still_runs(
    stage: CeleryStage, start_api, stage_package: str, stage_env: dict[str, str], mail_server: SmtpSink
) -> None:
    # The contrast with stage 1, where a crash of the server loses the e-mail: here the job waits in Redis.
    api = start_api(f"{stage_package}.main:app", **stage_env)
    response = httpx.post(f"{api.base_url}/users/9/welcome", timeout=10)
    assert response.status_code == 202
    status_url = response.json()["status_url"]

    api.process.kill()  # a crash: SIGKILL, no clean-up
    restarted = start_api(f"{stage_package}.main:app", **stage_env)
    with httpx.Client(base_url=restarted.base_url, timeout=10) as new_client:
        assert job_status(new_client, status_url)["status"] == "queued"
        with stage.worker():
            wait_for_status(new_client, status_url, "succeeded")

    (mail,) = mail_server.wait_for_messages(1)
    assert mail.rcpt_tos == ["user9@example.com"]


def test_an_id_that_was_never_issued_is_404_although_celery_says_pending(
    stage: CeleryStage, client: httpx.Client
) -> None:
    never_issued = str(uuid.uuid4())
    # The seed's trap: Celery cannot tell an unknown id from a queued job.
    assert AsyncResult(never_issued, app=stage.celery_app).state == "PENDING"

    response = client.get(f"/jobs/{never_issued}")

    assert response.status_code == 404
    assert response.json() == {"detail": f"No job {never_issued}: it was never issued, or it has expired."}


def test_a_job_id_that_is_not_a_uuid_is_422_naming_the_field(client: httpx.Client) -> None:
    response = client.get("/jobs/not-a-job-id")

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "job_id"]


def test_a_failing_job_is_reported_as_failed_with_its_error_not_as_a_500(
    stage: CeleryStage, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No mail server listens on this port, so sending the welcome e-mail fails.
    monkeypatch.setattr(stage.settings, "smtp_host", "127.0.0.1")
    monkeypatch.setattr(stage.settings, "smtp_port", free_port())
    status_url = enqueue(client, "/users/7/welcome")

    with stage.worker():
        failed = wait_for_status(client, status_url, "failed")

    assert failed["backend_status"] == "FAILURE"
    # The type and message only (the errno differs: 111 on Linux, 61 on macOS).
    assert failed["error"].startswith("ConnectionRefusedError: [Errno ")
    assert failed["error"].endswith("] Connection refused")
    assert "result" not in failed


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/jobs/add", {"x": "two", "y": 3}, ["body", "x"]),
        ("/jobs/add", {"x": 2}, ["body", "y"]),
        ("/jobs/report", {"rows": []}, ["body", "rows"]),
        ("/jobs/report", {"rows": [1, "many"]}, ["body", "rows", 1]),
        ("/users/0/welcome", None, ["path", "user_id"]),
    ],
)
def test_bad_input_is_422_naming_the_field_and_enqueues_nothing(
    client: httpx.Client, queues: Queues, path: str, body: dict | None, field: list
) -> None:
    response = client.post(path, json=body)

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [field]
    assert queues.waiting() == 0
    assert queues.job_keys() == []
