"""Idempotency-Key in stage 5: stage 3's tests, run here, an upload whose media type is not in
lower case, and keys of its own (stage 3 and stage 5 may share a Redis database)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.celery_stage import CeleryStage
from tests.job_api import wait_for_status
from tests.stage3.test_idempotency import (  # noqa: F401 (collected by pytest, and their fixtures)
    post_add,
    stallable_redis,
    start_worker_on,
    test_a_job_that_redis_refused_leaves_its_key_free_for_the_retry,
    test_a_key_claimed_while_redis_stalls_never_answers_a_job_that_was_never_made,
    test_the_same_request_in_other_bytes_answers_the_same_job,
    test_two_requests_at_once_with_one_key_make_one_job,
    trouble_api,
)
from tests.stage4.test_idempotency import png, upload
from tests.stage5.conftest import StageQueues


@pytest.fixture
def worker_of_add_jobs() -> str:
    """The reports worker also takes the jobs of the "default" queue, where /jobs/add goes."""
    return "worker_reports"


@pytest.mark.parametrize("media_type", ["Multipart/form-data", "MULTIPART/FORM-DATA"])
def test_an_upload_with_a_key_and_a_media_type_in_capitals_is_one_job_and_keeps_one_file(
    stage: CeleryStage, api_url: str, stage_env: dict[str, str], media_type: str
) -> None:
    uploads = Path(stage_env["UPLOAD_DIR"])
    before = set(uploads.iterdir())
    with httpx.Client(base_url=api_url, timeout=5) as client:
        first = upload(client, "/thumbnails", png("red"), f"upload-{media_type}", media_type)
        again = upload(client, "/thumbnails", png("red"), f"upload-{media_type}", media_type)

        assert first.status_code == again.status_code == 202, first.text
        assert again.json() == first.json()
        assert len(set(uploads.iterdir()) - before) == 1, "a repeated upload was kept"
        with stage.worker():
            wait_for_status(client, first.json()["status_url"], "succeeded")


def test_a_key_used_with_stage_3_is_another_key_in_stage_5(
    stage: CeleryStage, client: httpx.Client, start_api, stage_env: dict[str, str], queues: StageQueues
) -> None:
    # Both stages on one Redis database, as a learner's who runs them one after the other with the defaults.
    stage3 = start_api("stage3_retries.main:app", **stage_env)
    with httpx.Client(base_url=stage3.base_url, timeout=10) as stage3_client:
        in_stage3 = post_add(stage3_client, "order-51")
    in_stage5 = post_add(client, "order-51")

    assert in_stage3.status_code == in_stage5.status_code == 202
    assert in_stage5.json()["job_id"] != in_stage3.json()["job_id"]
    with stage.worker():
        wait_for_status(client, in_stage5.json()["status_url"], "succeeded")
