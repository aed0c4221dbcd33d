"""Each library's worker as a learner meets it: no Redis, a worker killed with kill -9 mid-job, RQ
without its scheduler, a repeated POST with an Idempotency-Key (a job waiting for its worker:
test_forgotten_worker.py)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.job_api import job_status, wait_for_status
from tests.stage4.conftest import LIBRARIES, STAGE
from tutorial.processes import ManagedProcess, UvicornServer, free_port, python_command
from tutorial.waiting import WaitTimeout, wait_until

# What happens to a job whose worker is killed with kill -9 mid-job (measured; the README's table says why).
# RQ's forking worker runs each job in a child of its own process group: killing the worker's group
# leaves that child running, and it finishes the job (attempts 1). Celery (acks_late, visibility
# timeout) and Dramatiq (a dead worker's messages are requeued by maintenance) run it again.
AFTER_KILL_9 = {"celery": ("succeeded", 2), "rq": ("succeeded", 1), "dramatiq": ("succeeded", 2)}
# Quick redelivery for the kill -9 test: Celery's visibility timeout, Dramatiq's heartbeat timeout.
# The job lasts 1 s, long enough to be seen started, and less than either (as it must: a
# redelivery while it still runs would be a third attempt).
QUICK_REDELIVERY = {
    "VISIBILITY_TIMEOUT_SECONDS": "2",
    "DRAMATIQ_HEARTBEAT_TIMEOUT_SECONDS": "2",
    "DRAMATIQ_MAINTENANCE_CHANCE": "1000000",
    "ADD_DELAY_SECONDS": "1",
}


def post(client: httpx.Client, library: str, path: str, body: dict | None = None, **options) -> str:
    response = client.post(f"/{library}{path}", json=body, **options)
    assert response.status_code == 202, response.text
    return response.json()["status_url"]


@pytest.mark.parametrize("library", LIBRARIES)
def test_a_worker_killed_with_kill_9_mid_job_leaves_what_its_library_guarantees(
    library: str, client: httpx.Client, start_worker: Callable[..., ManagedProcess], stage_env: dict[str, str]
) -> None:
    worker = start_worker(library, **QUICK_REDELIVERY)
    status_url = post(client, library, "/jobs/add", {"x": 1, "y": 2})
    wait_for_status(client, status_url, "started", timeout=20)

    worker.kill()  # SIGKILL to the worker's whole process group
    start_worker(library, **QUICK_REDELIVERY)
    outcome, attempts = AFTER_KILL_9[library]
    ended = wait_for_status(client, status_url, outcome, timeout=30)

    assert ended["attempts"] == attempts


@pytest.fixture(scope="module")
def api_without_redis(stage_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**os.environ, **stage_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "REDIS_TIMEOUT_SECONDS": "1"}
    with UvicornServer(f"{STAGE}.main:app", env=env, log_dir=tmp_path_factory.mktemp("no-redis")) as api:
        yield api.base_url


@pytest.mark.parametrize("library", LIBRARIES)
def test_without_redis_every_library_answers_503_within_seconds(api_without_redis: str, library: str) -> None:
    with httpx.Client(base_url=api_without_redis, timeout=1.8) as client:
        posted = client.post(f"/{library}/jobs/add", json={"x": 1, "y": 2})
        asked = client.get(f"/{library}/jobs/3fa85f64-5717-4562-b3fc-2c963f66afa6")

    assert (posted.status_code, asked.status_code) == (503, 503)
    assert "is not reachable" in posted.json()["detail"]


@pytest.mark.parametrize("library", LIBRARIES)
def test_the_same_idempotency_key_answers_the_same_job_in_every_library(library: str, client: httpx.Client) -> None:
    first = post(client, library, "/jobs/add", {"x": 1, "y": 1}, headers={"Idempotency-Key": f"k-{library}"})
    again = post(client, library, "/jobs/add", {"x": 1, "y": 1}, headers={"Idempotency-Key": f"k-{library}"})
    other = client.post(f"/{library}/jobs/add", json={"x": 9, "y": 9}, headers={"Idempotency-Key": f"k-{library}"})

    assert first == again
    assert other.status_code == 422


def test_rq_without_its_scheduler_leaves_a_delayed_job_scheduled_for_ever(
    client: httpx.Client, stage_env: dict[str, str], tmp_path, request: pytest.FixtureRequest
) -> None:
    status_url = post(client, "rq", "/jobs/add", {"x": 1, "y": 1, "delay_seconds": 1})
    rq_command = ["-m", "rq.cli", "worker", "--url", stage_env["REDIS_URL"]]
    rq_command += ["--serializer", "rq.serializers.JSONSerializer", "default"]
    worker = ManagedProcess(
        "rq-no-scheduler", python_command(*rq_command), env={**os.environ, **stage_env}, log_dir=tmp_path
    )
    request.addfinalizer(worker.stop)
    worker.start()
    worker.wait_for_output("Listening on default", timeout=30)

    # Nothing moves a due job from RQ's scheduled registry to the queue without a scheduler: a
    # negative can only be watched for a while, here 3 s past the time the job was due.
    with pytest.raises(WaitTimeout):
        wait_until(lambda: job_status(client, status_url)["status"] != "scheduled", timeout=4, what="a change")
    assert job_status(client, status_url)["backend_status"] == "scheduled"


def test_an_upload_repeated_with_its_idempotency_key_is_one_job_and_another_image_is_refused_and_not_kept(
    client: httpx.Client, stage_env: dict[str, str]
) -> None:
    def png(color: str) -> bytes:
        image = io.BytesIO()
        Image.new("RGB", (40, 20), color).save(image, format="PNG")
        return image.getvalue()

    headers = {"Idempotency-Key": "upload-1"}
    first = client.post("/celery/thumbnails", files={"file": ("a.png", png("red"))}, headers=headers)
    kept_before = sorted(Path(stage_env["UPLOAD_DIR"]).glob("*.png"))
    again = client.post("/celery/thumbnails", files={"file": ("a.png", png("red"))}, headers=headers)
    other = client.post("/celery/thumbnails", files={"file": ("b.png", png("blue"))}, headers=headers)

    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert other.status_code == 422
    assert sorted(Path(stage_env["UPLOAD_DIR"]).glob("*.png")) == kept_before, "a repeated or refused upload was kept"
