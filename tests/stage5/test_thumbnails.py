"""Stage 4's safe upload, kept in stage 5: a thumbnail is a job of the reports queue."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
from PIL import Image

from tests.celery_stage import CeleryStage
from tests.job_api import wait_for_status
from tests.stage5.conftest import StageQueues


def test_an_upload_becomes_a_thumbnail_job_of_the_reports_queue(stage: CeleryStage, client: httpx.Client) -> None:
    image = io.BytesIO()
    Image.new("RGB", (300, 600), "navy").save(image, format="PNG")
    response = client.post("/thumbnails", files={"file": ("..\\\\x.png", image.getvalue())})
    assert response.status_code == 202, response.text

    with stage.worker():
        done = wait_for_status(client, response.json()["status_url"], "succeeded")

    assert done["queue"] == "reports"
    assert (done["result"]["width"], done["result"]["height"]) == (64, 128)
    thumbnail = client.get(done["result"]["thumbnail_url"])
    assert (thumbnail.status_code, thumbnail.headers["content-type"]) == (200, "image/png")


def test_a_text_file_named_like_an_image_is_415_and_no_job(
    client: httpx.Client, queues: StageQueues, stage_env: dict[str, str]
) -> None:
    uploads = Path(stage_env["UPLOAD_DIR"])
    files_before, keys_before = sorted(uploads.rglob("*")), sorted(queues.redis.keys())

    response = client.post("/thumbnails", files={"file": ("cat.png", b"meow, not a picture")})

    assert response.status_code == 415, response.text
    assert "not a PNG, JPEG, GIF or WebP image" in response.json()["detail"]
    # No job: nothing waits in a queue, and Redis holds no key it did not hold before (no job mark).
    assert queues.waiting() == 0
    assert sorted(queues.redis.keys()) == keys_before
    # And the refused bytes were not kept.
    assert sorted(uploads.rglob("*")) == files_before
