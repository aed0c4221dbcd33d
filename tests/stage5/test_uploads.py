"""Stage 4's UPLOAD_DIR rules, kept in stage 5: private, emptied by the jobs and by later uploads,
never served through a link; and a JPEG decoded at a fraction of its size."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from PIL import Image

from tests.celery_stage import CeleryStage
from tests.job_api import wait_for_status
from tests.stage3.test_idempotency import (  # noqa: F401 (a fixture)
    STALL_REDIS_TIMEOUT_SECONDS,
    STALL_SECONDS,
    redis_asleep,
    stallable_redis,
)
from tests.stage5.conftest import STAGE, StageQueues
from tutorial.processes import UvicornServer
from tutorial.redis_server import RedisService
from tutorial.waiting import WaitTimeout


def encoded(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def originals(folder: Path) -> set[str]:
    """The uploads waiting in UPLOAD_DIR for their job."""
    return {path.name for path in folder.iterdir() if path.is_file()}


def post_upload(client: httpx.Client, content: bytes, folder: Path) -> tuple[str, str]:
    """POST an upload while no worker runs: its status URL, and the name it is stored under."""
    before = originals(folder)
    response = client.post("/thumbnails", files={"file": ("picture.png", content)})
    assert response.status_code == 202, response.text
    (stored_name,) = originals(folder) - before
    return response.json()["status_url"], stored_name


def test_after_its_job_an_upload_leaves_only_its_thumbnail_or_nothing_if_the_job_failed(
    stage: CeleryStage, client: httpx.Client
) -> None:
    folder = Path(stage.settings.upload_dir)
    broken = encoded(Image.effect_noise((200, 100), 50).convert("RGB"), "PNG")
    broken = broken[: len(broken) // 2]  # its header is whole, so the API takes it; the worker cannot decode it
    made_url, made_name = post_upload(client, encoded(Image.new("RGB", (300, 100), "navy"), "PNG"), folder)
    failed_url, failed_name = post_upload(client, broken, folder)

    with stage.worker():
        made = wait_for_status(client, made_url, "succeeded")
        failed = wait_for_status(client, failed_url, "failed")

    made_stem, failed_stem = Path(made_name).stem, Path(failed_name).stem
    assert made["result"]["thumbnail_url"] == f"/thumbnails/{made_stem}.png"
    assert "image file is truncated" in failed["error"]
    left = {path.relative_to(folder).as_posix() for path in folder.rglob("*")}
    assert {name for name in left if made_stem in name} == {f"thumbnails/{made_stem}.png"}  # the upload is gone
    assert {name for name in left if failed_stem in name} == set()  # no upload, no thumbnail
    assert [name for name in left if name.endswith(".partial")] == []


def test_each_upload_sweeps_away_what_uploads_older_than_a_job_result_left(
    stage: CeleryStage, client: httpx.Client, queues: StageQueues
) -> None:
    folder = Path(stage.settings.upload_dir)
    day_and_a_minute_ago = time.time() - 86400 - 60  # RESULT_EXPIRES_SECONDS: a day
    old = [
        folder / f"{os.urandom(16).hex()}.jpg",  # an upload whose job never ran
        folder / "thumbnails" / f"{os.urandom(16).hex()}.png",
        folder / "thumbnails" / f".{os.urandom(16).hex()}.partial",  # a worker killed while writing
    ]
    kept = [
        folder / "thumbnails" / f"{os.urandom(16).hex()}.png",  # a young thumbnail
        folder / "notes.txt",  # not a name the server gives out
    ]
    for path in old + kept:
        path.write_bytes(b"x")
    for path in [*old, kept[1]]:
        os.utime(path, (day_and_a_minute_ago, day_and_a_minute_ago))

    response = client.post("/thumbnails", files={"file": ("a.png", encoded(Image.new("RGB", (60, 30)), "PNG"))})
    queues.drop_waiting_jobs()  # no worker is meant to run it

    assert response.status_code == 202, response.text
    assert [path.name for path in old if path.exists()] == []
    assert [path.name for path in kept if path.exists()] == [path.name for path in kept]


def test_get_thumbnails_does_not_serve_through_a_link_planted_in_the_folder(
    stage: CeleryStage, client: httpx.Client, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    link = Path(stage.settings.upload_dir) / "thumbnails" / ("0123456789abcdef" * 2 + ".png")
    link.symlink_to(secret)
    try:
        response = client.get(f"/thumbnails/{link.name}")
    finally:
        link.unlink()

    assert response.status_code == 404, response.text
    assert "root:" not in response.text


def test_by_default_uploads_go_to_a_folder_in_the_users_home_that_only_the_user_can_open(
    stage_env: dict[str, str], queues: StageQueues, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in {**os.environ, **stage_env}.items() if key != "UPLOAD_DIR"}
    api = UvicornServer(f"{STAGE}.main:app", env={**env, "HOME": str(home)}, log_dir=tmp_path)
    request.addfinalizer(api.stop)
    api.start()

    with httpx.Client(base_url=api.base_url, timeout=10) as client:
        response = client.post("/thumbnails", files={"file": ("a.png", encoded(Image.new("RGB", (60, 30)), "PNG"))})
    queues.drop_waiting_jobs()  # no worker is meant to run it

    assert response.status_code == 202, response.text
    folder = home / ".cache" / STAGE / "uploads"
    assert len(originals(folder)) == 1
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "thumbnails").stat().st_mode) == 0o700


def start_api_with_upload_dir(
    folder: Path, stage_env: dict[str, str], log_dir: Path, request: pytest.FixtureRequest
) -> UvicornServer:
    env = {**os.environ, **stage_env, "UPLOAD_DIR": str(folder)}
    api = UvicornServer(f"{STAGE}.main:app", env=env, log_dir=log_dir)
    request.addfinalizer(api.stop)
    return api


def test_an_upload_dir_that_others_may_open_is_refused_at_start(
    stage_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir()
    folder.chmod(0o755)
    api = start_api_with_upload_dir(folder, stage_env, tmp_path, request)

    with pytest.raises(WaitTimeout, match="stopped while waiting") as refused:
        api.start()

    assert f"UPLOAD_DIR {folder} is open to other users (mode 755): make it yours alone (chmod 700 {folder})" in str(
        refused.value
    )


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a folder away needs root")
def test_an_upload_dir_of_another_user_is_refused_at_start(
    stage_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)  # nobody's
    api = start_api_with_upload_dir(folder, stage_env, tmp_path, request)

    with pytest.raises(WaitTimeout, match="stopped while waiting") as refused:
        api.start()

    assert f"UPLOAD_DIR {folder} belongs to another user (uid 65534)" in str(refused.value)


# In a fresh process: how much a make_thumbnail call grows its peak memory (ru_maxrss, KiB on Linux).
PEAK_GROWTH = f"""
import resource, sys
from {STAGE} import thumbnails
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
thumbnails.make_thumbnail(sys.argv[1])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss counts KiB on Linux (bytes on macOS)")
def test_a_thumbnail_job_of_a_photo_at_the_pixel_cap_decodes_a_fraction_of_it(
    stage_env: dict[str, str], tmp_path: Path
) -> None:
    # 24 million pixels, turned by EXIF. Decoded whole, then turned: the job grew the process by 57 MB
    # (measured). Decoded at an eighth of its size, and turned once small: by nothing measurable.
    exif = Image.Exif()
    exif[0x0112] = 6
    folder = tmp_path / "uploads"
    folder.mkdir()
    name = os.urandom(16).hex() + ".jpg"
    photo = Image.new("RGB", (6000, 4000), "blue")
    photo.paste("red", (0, 0, 3000, 4000))
    photo.save(folder / name, "JPEG", exif=exif)
    env = {**os.environ, **stage_env, "UPLOAD_DIR": str(folder)}

    measured = subprocess.run(
        [sys.executable, "-c", PEAK_GROWTH, name],
        env=env,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert measured.returncode == 0, measured.stderr
    grown_mb = int(measured.stdout) / 1024
    assert grown_mb < 24, f"the job grew its process by {grown_mb:.0f} MB: a quarter of a whole decode (96 MB) or more"


@pytest.fixture
def thumbnails_route() -> str:
    return "/thumbnails"


def test_an_upload_whose_publish_timed_out_keeps_its_file_for_the_job_redis_may_still_queue(
    start_api,
    stage_package: str,
    stage_env: dict[str, str],
    thumbnails_route: str,
    stallable_redis: RedisService,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    """Stage 4's upload code, run here and in stage 4 (tests/stage4/test_uploads.py imports it)."""
    # The broker stalls (DEBUG SLEEP), the results Redis answers: the job's mark is stored, its
    # publish times out, and Redis runs the publish when it wakes. The job then needs the file.
    folder = tmp_path / "uploads"
    folder.mkdir(mode=0o700)
    env = {
        **stage_env,
        "REDIS_URL": stallable_redis.url,
        "RESULT_BACKEND_URL": stage_env["REDIS_URL"],
        "REDIS_TIMEOUT_SECONDS": str(STALL_REDIS_TIMEOUT_SECONDS),
        "UPLOAD_DIR": str(folder),
    }
    api = start_api(f"{stage_package}.main:app", **env)
    upload = {"file": ("picture.png", encoded(Image.new("RGB", (60, 30), "navy"), "PNG"))}
    with httpx.Client(base_url=api.base_url, timeout=10) as client:
        # As in an API that runs: its connection to the broker is open before Redis stalls.
        assert client.post(thumbnails_route, files=upload).status_code == 202
        before = originals(folder)
        with redis_asleep(stallable_redis.url, STALL_SECONDS):
            stalled = client.post(thumbnails_route, files=upload)

    assert stalled.status_code == 503, stalled.text
    assert f"did not answer within {STALL_REDIS_TIMEOUT_SECONDS:g} s" in stalled.json()["detail"]
    kept = originals(folder) - before
    assert len(kept) == 1, "the upload was deleted, though Redis may still queue its job (it then fails without it)"
    with redis.Redis.from_url(stallable_redis.url) as broker:
        queued = [message for name in broker.scan_iter(_type="list") for message in broker.lrange(name, 0, -1)]
        broker.flushdb()
    assert any(kept.pop().encode() in message for message in queued), "Redis queued the job when it woke"
