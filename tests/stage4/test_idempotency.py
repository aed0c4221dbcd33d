"""Idempotency-Key in every library: a request means what it asks for, not its bytes; an upload
whose media type is not in lower case; a key claimed while Redis stalls.

The claim code is one, in hardening.py, for the three libraries: the stall is tested with Celery's
worker; the requests, which need no worker, with every library.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.job_api import wait_for_status
from tests.stage3.test_idempotency import (  # noqa: F401 (a fixture)
    STALL_REDIS_TIMEOUT_SECONDS,
    STALL_SECONDS,
    assert_409_while_pending,
    redis_asleep,
    retry_while_409,
    stallable_redis,
    wait_for_the_key,
)
from tests.stage4.conftest import LIBRARIES, READY, STAGE
from tutorial.processes import ManagedProcess
from tutorial.redis_server import RedisService


def png(color: str) -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (40, 20), color).save(image, format="PNG")
    return image.getvalue()


def upload(client: httpx.Client, path: str, image: bytes, key: str, media_type: str) -> httpx.Response:
    """POST a multipart form whose Content-Type names its media type as ``media_type`` writes it."""
    request = client.build_request("POST", path, files={"file": ("a.png", image)}, headers={"Idempotency-Key": key})
    request.headers["Content-Type"] = request.headers["Content-Type"].replace("multipart/form-data", media_type)
    try:
        return client.send(request)
    except httpx.TimeoutException:
        pytest.fail(f"no answer within {client.timeout.read} s: the upload hung")


def post_add(client: httpx.Client, library: str, key: str, body: str = '{"x": 2, "y": 3}') -> httpx.Response:
    headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
    return client.post(f"/{library}/jobs/add", content=body, headers=headers)


@pytest.mark.parametrize("library", LIBRARIES)
def test_the_same_request_in_other_bytes_answers_the_same_job_in_every_library(
    library: str, client: httpx.Client
) -> None:
    key = f"order-47-{library}"
    first = post_add(client, library, key)
    same_requests = ['{"y": 3, "x": 2}', '{ "x" : 2 ,\n  "y" : 3 }', '{"x": 2, "y": 3, "delay_seconds": 0}']
    again = [post_add(client, library, key, body) for body in same_requests]
    other = post_add(client, library, key, '{"x": 3, "y": 3}')

    assert [answer.status_code for answer in [first, *again]] == [202] * 4, [answer.text for answer in again]
    assert {answer.json()["job_id"] for answer in again} == {first.json()["job_id"]}
    assert other.status_code == 422


@pytest.mark.parametrize("library", LIBRARIES)
def test_an_upload_with_a_key_and_a_media_type_in_capitals_is_one_job_and_keeps_one_file(
    library: str, api_url: str, stage_env: dict[str, str]
) -> None:
    uploads = Path(stage_env["UPLOAD_DIR"])
    before = set(uploads.iterdir())
    with httpx.Client(base_url=api_url, timeout=5) as client:
        first = upload(client, f"/{library}/thumbnails", png("red"), f"upload-{library}", "Multipart/form-data")
        again = upload(client, f"/{library}/thumbnails", png("red"), f"upload-{library}", "Multipart/form-data")

    assert first.status_code == again.status_code == 202, first.text
    assert again.json() == first.json()
    assert len(set(uploads.iterdir()) - before) == 1, "a repeated upload was kept"


def test_a_key_claimed_while_redis_stalls_never_answers_a_job_that_was_never_made(
    start_api,
    stage_env: dict[str, str],
    stallable_redis: RedisService,  # noqa: F811 (the fixture)
    start_worker: Callable[..., ManagedProcess],
) -> None:
    env = {**stage_env, "REDIS_URL": stallable_redis.url, "REDIS_TIMEOUT_SECONDS": str(STALL_REDIS_TIMEOUT_SECONDS)}
    api = start_api(f"{STAGE}.main:app", **env)
    with httpx.Client(base_url=api.base_url, timeout=10) as client:
        # As in an API that runs, its connections to Redis are open before Redis stalls.
        for number in range(3):
            assert post_add(client, "celery", f"warm-up-{number}").status_code == 202
        with redis_asleep(stallable_redis.url, STALL_SECONDS):
            stalled = post_add(client, "celery", "order-48")
        # The worker that runs the job in the end starts meanwhile (it takes a second or two).
        worker = start_worker("celery", wait=False, REDIS_URL=stallable_redis.url)
        wait_for_the_key(stallable_redis.url, "order-48")  # Redis ran the claim the API had given up on
        *while_pending, retried = retry_while_409(lambda: post_add(client, "celery", "order-48"))

        assert stalled.status_code == 503, stalled.text
        assert retried.status_code == 202, retried.text
        job = client.get(retried.json()["status_url"])
        assert job.status_code == 200, f"the key answered a job that was never made: {job.text}"
        assert_409_while_pending(while_pending)
        worker.wait_for_output(READY["celery"], timeout=30)
        wait_for_status(client, retried.json()["status_url"], "succeeded", timeout=20)
