"""One contract, three libraries: the same requests answered the same way by Celery, RQ and Dramatiq,
each with a real worker started from the stage's Procfile (one per library for this module)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from PIL import Image

from tests.job_api import job_status, wait_for_answer, wait_for_status
from tests.procfile import procfile_process
from tests.stage4.conftest import LIBRARIES, MAX_RETRIES, READY, STAGE
from tutorial.mail import SmtpSink
from tutorial.processes import ManagedProcess
from tutorial.waiting import wait_until
from tutorial.webhooks import WebhookReceiver

EVENT = {"type": "order.paid", "payload": {"order": 7}}


@pytest.fixture(scope="module", params=LIBRARIES)
def library(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def worker(
    library: str, stage_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    with procfile_process(STAGE, library, stage_env, tmp_path_factory.mktemp(library)) as process:
        process.wait_for_output(READY[library], timeout=30)
        yield process


def post(client: httpx.Client, library: str, path: str, body: dict | None = None, **options) -> str:
    """POST a job of ``library``, check the contract's 202 answer, return its status URL."""
    response = client.post(f"/{library}{path}", json=body, **options)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status_url"] == f"/{library}/jobs/{accepted['job_id']}" == response.headers["Location"]
    return accepted["status_url"]


def test_a_job_succeeds_with_its_result(worker: ManagedProcess, library: str, client: httpx.Client) -> None:
    done = wait_for_status(client, post(client, library, "/jobs/add", {"x": 2, "y": 3}), "succeeded")

    assert (done["result"], done["attempts"]) == (5, 1)


def test_a_report_shows_its_progress_while_it_runs(worker: ManagedProcess, library: str, client: httpx.Client) -> None:
    status_url = post(client, library, "/jobs/report", {"rows": [1, 2, 3, 4]})  # 0.3 s a row

    running = wait_for_answer(client, status_url, lambda job: job["status"] == "progress", "in progress", timeout=15)
    done = wait_for_status(client, status_url, "succeeded", timeout=15)

    assert running["progress"]["total"] == 4 and 1 <= running["progress"]["current"] <= 4
    assert done["result"] == {"rows": 4, "sum": 10.0, "mean": 2.5, "min": 1.0, "max": 4.0}


def test_the_welcome_email_is_sent_by_the_worker(
    worker: ManagedProcess, library: str, client: httpx.Client, mail: SmtpSink
) -> None:
    wait_for_status(client, post(client, library, "/users/12/welcome"), "succeeded")

    (message,) = mail.wait_for_messages(1)
    assert message.rcpt_tos == ["user12@example.com"]


def test_a_flaky_receiver_gets_the_event_on_the_third_attempt_with_one_idempotency_key(
    worker: ManagedProcess, library: str, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.fail_first(2)  # 503, 503, then 200
    status_url = post(client, library, "/events", EVENT)

    done = wait_for_status(client, status_url, "succeeded", timeout=20)

    job_id = status_url.rsplit("/", 1)[-1]
    assert done["attempts"] == 3
    assert [request.idempotency_key for request in receiver.requests] == [job_id] * 3
    assert [request.status for request in receiver.requests] == [503, 503, 200]


def test_a_failing_job_is_failed_with_a_readable_error(
    worker: ManagedProcess, library: str, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.fail_always(400)

    failed = wait_for_status(client, post(client, library, "/events", EVENT), "failed", timeout=20)

    assert failed["error"] == f"WebhookFailed: {receiver.url} answered 400 Bad Request"


def test_a_dead_receiver_leaves_a_dead_letter_whose_replay_succeeds_once_it_is_fixed(
    worker: ManagedProcess, library: str, client: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.fail_always(500)
    status_url = post(client, library, "/events", EVENT)
    job_id = status_url.rsplit("/", 1)[-1]
    failed = wait_for_status(client, status_url, "failed", timeout=20)
    assert failed["attempts"] == MAX_RETRIES + 1

    # Dramatiq moves the message to its dead-letter queue just after it records "failed": wait for it.
    (letter,) = wait_until(
        lambda: [letter for letter in client.get(f"/{library}/dead-letters").json() if letter["job_id"] == job_id],
        timeout=10,
        what=f"{job_id} among the dead letters",
    )
    assert letter["args"] == [EVENT]
    assert letter["error"] == f"WebhookFailed: {receiver.url} answered 500 Internal Server Error"
    receiver.heal()
    key = {"Idempotency-Key": f"replay-{job_id}"}
    replay = client.post(f"/{library}/dead-letters/{job_id}/replay", headers=key)
    again = client.post(f"/{library}/dead-letters/{job_id}/replay", headers=key)  # the first answer was lost
    assert replay.status_code == again.status_code == 202
    assert again.json() == replay.json()
    to_follow = replay.json()
    # RQ requeues the job itself (same id); Celery and Dramatiq make a new job.
    assert (to_follow["job_id"] == job_id) == (library == "rq")
    wait_for_status(client, to_follow["status_url"], "succeeded", timeout=20)
    assert client.post(f"/{library}/dead-letters/{job_id}/replay").status_code == 404


def test_a_countdown_job_is_scheduled_then_succeeds_not_earlier(
    worker: ManagedProcess, library: str, client: httpx.Client
) -> None:
    # 2 s: RQ keeps a job's due time in whole seconds (rounded down), so a 1 s countdown could be due
    # before the test sees it scheduled.
    status_url = post(client, library, "/jobs/add", {"x": 1, "y": 1, "delay_seconds": 2})

    scheduled = job_status(client, status_url)
    done = wait_for_status(client, status_url, "succeeded", timeout=20)

    assert scheduled["status"] == "scheduled"
    assert datetime.now(UTC) >= datetime.fromisoformat(scheduled["run_at"])
    assert done["result"] == 2


def test_a_thumbnail_is_made_from_an_upload(worker: ManagedProcess, library: str, client: httpx.Client) -> None:
    image = io.BytesIO()
    Image.new("RGB", (640, 320), "teal").save(image, format="JPEG")
    response = client.post(f"/{library}/thumbnails", files={"file": ("../../etc/passwd", image.getvalue())})
    assert response.status_code == 202, response.text

    done = wait_for_status(client, response.json()["status_url"], "succeeded", timeout=20)

    assert (done["result"]["width"], done["result"]["height"]) == (128, 64)
    thumbnail = client.get(done["result"]["thumbnail_url"])
    assert thumbnail.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(thumbnail.content)).size == (128, 64)


def test_an_id_never_issued_or_of_another_library_is_404(
    worker: ManagedProcess, library: str, client: httpx.Client
) -> None:
    other = next(name for name in LIBRARIES if name != library)
    job_id = post(client, other, "/jobs/add", {"x": 1, "y": 2}, headers={}).rsplit("/", 1)[-1]

    assert client.get(f"/{library}/jobs/{job_id}").status_code == 404
    assert client.get(f"/{library}/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6").status_code == 404
    assert client.get(f"/{library}/jobs/42").status_code == 422


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/jobs/add", {"x": "two", "y": 3}, ["body", "x"]),
        ("/jobs/add", {"x": 2, "y": 3, "delay_seconds": -1}, ["body", "delay_seconds"]),
        ("/jobs/report", {"rows": []}, ["body", "rows"]),
        ("/users/0/welcome", None, ["path", "user_id"]),
        ("/events", {"type": "Not An Event"}, ["body", "type"]),
    ],
)
def test_bad_input_is_422_naming_the_field(library: str, client: httpx.Client, path: str, body, field: list) -> None:
    response = client.post(f"/{library}{path}", json=body)

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [field]
