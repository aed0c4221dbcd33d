"""Stage 4's safe upload and thumbnails (stage4_rq_dramatiq/uploads.py), with real images made by Pillow.

Every rule is checked over real HTTP against a real uvicorn serving tests/stage4/upload_app.py:
the stage's upload dependency and make_thumbnail, with no queue between them (the stage puts a
job of Celery, RQ or Dramatiq there). make_thumbnail is also called directly, as a worker does.
"""

from __future__ import annotations

import http.client
import importlib
import io
import os
import re
import select
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx
import pytest
from PIL import Image, PngImagePlugin

from tests.job_api import wait_for_status
from tests.stage4.conftest import LIBRARIES
from tests.stage4.conftest import STAGE as STAGE_NAME
from tests.stage5.test_uploads import (  # noqa: F401 (collected by pytest; a fixture)
    stallable_redis,
    test_an_upload_whose_publish_timed_out_keeps_its_file_for_the_job_redis_may_still_queue,
)
from tutorial.processes import ManagedProcess, UvicornServer
from tutorial.redis_server import RedisService, with_database
from tutorial.waiting import WaitTimeout

STAGE = Path(__file__).resolve().parents[2] / "stage4_rq_dramatiq"
LIMIT = 64 * 1024  # UPLOAD_MAX_BYTES of the tests' server: small, so the tests stay quick
THUMBNAIL_SIZE = 128
STORED_NAME = re.compile(r"[0-9a-f]{32}\.(png|jpg|gif|webp)")


# Images -----------------------------------------------------------------------------------------


def halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: a picture whose orientation can be seen."""
    image = Image.new("RGB", (width, height), "blue")
    image.paste("red", (0, 0, width // 2, height))
    return image


def is_red(pixel: tuple[int, ...]) -> bool:
    return pixel[0] > 200 and pixel[2] < 60  # JPEG blurs the colours a little


def is_blue(pixel: tuple[int, ...]) -> bool:
    return pixel[0] < 60 and pixel[2] > 200


def encoded(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def png_of_exactly(size: int) -> bytes:
    """A real PNG of exactly ``size`` bytes: a text chunk pads it (each character is one byte)."""

    def padded(characters: int) -> bytes:
        text = PngImagePlugin.PngInfo()
        text.add_text("padding", "x" * characters)
        return encoded(halves(40, 20), "PNG", pnginfo=text)

    content = padded(size - len(padded(0)))
    assert len(content) == size
    return content


def a_bomb(width: int, height: int) -> bytes:
    """A small PNG that decodes to width x height pixels (one bit each: the file is mostly zlib of zeros)."""
    return encoded(Image.new("1", (width, height)), "PNG")


# The server -------------------------------------------------------------------------------------


@dataclass
class Server:
    base_url: str
    root: Path  # watched: nothing may appear here outside upload_dir
    upload_dir: Path

    def files(self) -> set[str]:
        """Every file under root, as a path relative to root."""
        return {path.relative_to(self.root).as_posix() for path in self.root.rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("site")
    # Deep enough that a naive join of "../../etc/passwd" would land inside root, where the tests look.
    upload_dir = root / "srv" / "uploads"
    env = {
        **os.environ,
        "UPLOAD_DIR": str(upload_dir),
        "UPLOAD_MAX_BYTES": str(LIMIT),
        "THUMBNAIL_SIZE": str(THUMBNAIL_SIZE),
    }
    log_dir = tmp_path_factory.mktemp("upload-api-logs")
    with UvicornServer("tests.stage4.upload_app:app", env=env, log_dir=log_dir) as api:
        yield Server(api.base_url, root, upload_dir)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        yield client


def upload(client: httpx.Client, content: bytes, filename: str = "picture.png", content_type: str = "image/png"):
    return client.post("/thumbnails", files={"file": (filename, content, content_type)})


def get_raw(base_url: str, target: str) -> tuple[int, bytes]:
    """GET a target exactly as written: httpx would resolve its `..` segments before sending it."""
    address = urlsplit(base_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# The happy path ---------------------------------------------------------------------------------


def test_an_uploaded_png_comes_back_as_a_png_thumbnail_of_at_most_128_px(client: httpx.Client) -> None:
    response = upload(client, encoded(halves(1000, 500), "PNG"))

    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["width"], result["height"]) == (128, 64)
    assert re.fullmatch(r"/thumbnails/[0-9a-f]{32}\.png", result["thumbnail_url"])
    thumbnail = client.get(result["thumbnail_url"])
    assert thumbnail.status_code == 200
    assert thumbnail.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert (image.format, image.size) == ("PNG", (128, 64))


@pytest.mark.parametrize(
    ("image_format", "extension"), [("PNG", ".png"), ("JPEG", ".jpg"), ("GIF", ".gif"), ("WEBP", ".webp")]
)
def test_each_format_taken_is_stored_under_its_own_extension(
    client: httpx.Client, image_format: str, extension: str
) -> None:
    response = upload(client, encoded(halves(300, 100), image_format), filename="upload")

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["stored_name"].endswith(extension)
    assert (result["width"], result["height"]) == (128, 43)


def test_the_bytes_decide_the_type_not_the_filename_or_the_content_type(client: httpx.Client) -> None:
    jpeg_called_png = upload(client, encoded(halves(60, 30), "JPEG"), filename="cat.png", content_type="image/png")
    text_called_png = upload(client, b"I am not a cat.\n", filename="cat.png", content_type="image/png")
    png_called_text = upload(client, encoded(halves(60, 30), "PNG"), filename="cat.txt", content_type="text/plain")

    assert jpeg_called_png.status_code == 200, jpeg_called_png.text
    assert jpeg_called_png.json()["stored_name"].endswith(".jpg")
    assert text_called_png.status_code == 415, text_called_png.text
    assert "not a PNG, JPEG, GIF or WebP image" in text_called_png.json()["detail"]
    assert png_called_text.status_code == 200, png_called_text.text
    assert png_called_text.json()["stored_name"].endswith(".png")


def test_a_real_image_of_a_format_not_taken_is_415(client: httpx.Client) -> None:
    # Pillow reads BMP (and dozens of formats more); the upload tries only the four it takes.
    response = upload(client, encoded(halves(60, 30), "BMP"), filename="cat.bmp", content_type="image/bmp")

    assert response.status_code == 415, response.text


# The client's filename never becomes a path -----------------------------------------------------


@pytest.mark.parametrize(
    "filename",
    ["../../etc/passwd", "..\\..\\x.png", "{root}/escaped.png", "srv/uploads/thumbnails/" + "0" * 32 + ".png"],
)
def test_a_client_filename_never_becomes_a_path(client: httpx.Client, server: Server, filename: str) -> None:
    filename = filename.format(root=server.root)
    before = server.files()

    response = upload(client, encoded(halves(60, 30), "PNG"), filename=filename)

    assert response.status_code == 200, response.text
    stored_name = response.json()["stored_name"]
    assert STORED_NAME.fullmatch(stored_name)
    stem = stored_name.removesuffix(".png")
    # The thumbnail, under the server's name, inside UPLOAD_DIR (the upload itself is deleted once it is
    # made); nothing anywhere else.
    assert server.files() - before == {f"srv/uploads/thumbnails/{stem}.png"}
    assert not (server.root / "escaped.png").exists()


@pytest.fixture(scope="module")
def uploaded(server: Server) -> dict[str, Any]:
    """One upload (a JPEG), with its thumbnail made: files a traversal could reach if it worked."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        response = upload(client, encoded(halves(60, 30), "JPEG"), filename="photo.jpg", content_type="image/jpeg")
    assert response.status_code == 200, response.text
    return response.json()


def test_get_thumbnails_serves_a_thumbnail_as_image_png(server: Server, uploaded: dict[str, Any]) -> None:
    status, content = get_raw(server.base_url, uploaded["thumbnail_url"])

    assert status == 200
    assert content.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(
    "target",
    [
        "/thumbnails/..%2F{stored_name}",  # the original upload, one folder up
        "/thumbnails/..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/thumbnails/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/thumbnails/../../../etc/passwd",
        "/thumbnails/..%5C..%5C..%5Cetc%5Cpasswd",
        "/thumbnails/..\\..\\..\\etc\\passwd",
        "/thumbnails/%2Fetc%2Fpasswd",
        "/thumbnails//etc/passwd",
        "/thumbnails/{STEM}.png",  # not a name the server gives out
        "/thumbnails/{stem}.png%0A",  # a good name, and a newline
        "/thumbnails/{stem}.jpg",
        "/thumbnails/" + "0" * 32 + ".png",  # a well-formed name of no thumbnail
    ],
)
def test_get_thumbnails_answers_404_to_anything_but_a_thumbnail_name(
    server: Server, uploaded: dict[str, Any], target: str
) -> None:
    stem = uploaded["stored_name"].removesuffix(".jpg")
    target = target.format(stored_name=uploaded["stored_name"], stem=stem, STEM=stem.upper())

    status, content = get_raw(server.base_url, target)

    assert status == 404, content[:200]
    assert b"root:" not in content


def test_get_thumbnails_does_not_serve_through_a_link_planted_in_the_folder(
    server: Server, uploaded: dict[str, Any], tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    link = server.upload_dir / "thumbnails" / ("0123456789abcdef" * 2 + ".png")
    link.symlink_to(secret)
    try:
        status, content = get_raw(server.base_url, f"/thumbnails/{link.name}")
    finally:
        link.unlink()

    assert status == 404, content[:200]
    assert b"root:" not in content


# Size: counted while it is read -----------------------------------------------------------------


def test_a_file_of_exactly_the_limit_is_taken(client: httpx.Client) -> None:
    response = upload(client, png_of_exactly(LIMIT))

    assert response.status_code == 200, response.text


def test_a_file_one_byte_over_the_limit_is_413_and_nothing_is_stored(client: httpx.Client, server: Server) -> None:
    before = server.files()

    response = upload(client, png_of_exactly(LIMIT + 1))

    assert response.status_code == 413, response.text
    assert response.json() == {"detail": f"The file is larger than {LIMIT} bytes, the most this server takes."}
    assert server.files() == before


def test_a_content_length_over_the_limit_is_413_before_a_byte_of_the_body_is_read(client: httpx.Client) -> None:
    response = upload(client, png_of_exactly(2 * LIMIT))

    assert response.status_code == 413, response.text
    assert client.get("/last-upload-body-messages").json() == []


BOUNDARY = "endless-upload"


def endless_body() -> Iterator[bytes]:
    """The start of a form with one file, and then the file's bytes, forever."""
    yield (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="endless.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    while True:
        yield b"\0" * 8192


@dataclass
class EarlyAnswer:
    status: int
    body: bytes
    body_bytes_sent: int  # what the client had sent of its endless body when the answer came


def post_endless_upload(base_url: str, timeout: float) -> EarlyAnswer:
    """POST /thumbnails with a chunked body (no Content-Length) that never ends, until an answer comes.

    h11 keeps the HTTP/1.1 framing; the socket is non-blocking, so the client never waits on a
    full send buffer: it sends while it can, and reads as soon as anything arrives.
    """
    address = urlsplit(base_url)
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target="/thumbnails",
        headers=[
            ("Host", address.netloc),
            ("Content-Type", f"multipart/form-data; boundary={BOUNDARY}"),
            ("Transfer-Encoding", "chunked"),
        ],
    )
    body = endless_body()
    sent = 0
    outgoing = connection.send(request)
    status, received = None, b""
    deadline = time.monotonic() + timeout
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.setblocking(False)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no answer within {timeout}s; the client had sent {sent} bytes of body")
            sending = status is None
            readable, writable, _ = select.select([sock], [sock] if sending else [], [], remaining)
            if readable:
                connection.receive_data(sock.recv(65536))
                while (event := connection.next_event()) is not h11.NEED_DATA:
                    if isinstance(event, h11.Response):
                        status, sent_when_answered = event.status_code, sent
                    elif isinstance(event, h11.Data):
                        received += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        return EarlyAnswer(status, received, sent_when_answered)
                    else:
                        raise AssertionError(f"the connection ended without a whole answer: {event!r}")
            elif writable:
                if not outgoing:
                    chunk = next(body)
                    sent += len(chunk)
                    outgoing = connection.send(h11.Data(data=chunk))
                outgoing = outgoing[sock.send(outgoing) :]


def test_an_endless_chunked_upload_is_413_while_the_client_is_still_sending(
    client: httpx.Client, server: Server
) -> None:
    before = server.files()

    # The body never ends: a server that read it to its end would never answer.
    answer = post_endless_upload(server.base_url, timeout=10)

    assert answer.status == 413, answer
    messages = client.get("/last-upload-body-messages").json()
    body_limit = LIMIT + 16 * 1024  # the file, and room for the form around it (FORM_OVERHEAD_BYTES)
    # It stopped at the first body message that crossed the limit: everything before it fit.
    assert sum(messages[:-1]) <= body_limit < sum(messages), (messages, answer.body_bytes_sent)
    assert server.files() == before


# Bombs ------------------------------------------------------------------------------------------


def test_a_decompression_bomb_is_refused_before_any_job(client: httpx.Client, server: Server) -> None:
    # 30 million pixels in a few KB: over the stage's 25 million, under Pillow's own 89 million.
    bomb = a_bomb(6000, 5000)
    before = server.files()

    response = upload(client, bomb, filename="bomb.png")

    assert len(bomb) < LIMIT
    assert response.status_code == 422, response.text
    assert "6000x5000 pixels" in response.json()["detail"]
    assert server.files() == before


def test_a_bomb_that_pillow_itself_refuses_is_422_too_not_a_500(client: httpx.Client, server: Server) -> None:
    # 182 million pixels: Image.open itself raises DecompressionBombError (over twice its limit).
    bomb = a_bomb(13_500, 13_500)
    before = server.files()

    response = upload(client, bomb, filename="bomb.png")

    assert len(bomb) < LIMIT
    assert response.status_code == 422, response.text
    assert "more than 25000000 pixels" in response.json()["detail"]
    assert server.files() == before


# A missing or empty file ------------------------------------------------------------------------


def test_a_form_without_file_is_422_naming_it(client: httpx.Client) -> None:
    response = client.post("/thumbnails", files={"image": ("cat.png", encoded(halves(60, 30), "PNG"), "image/png")})

    assert response.status_code == 422, response.text
    assert [(error["loc"], error["msg"]) for error in response.json()["detail"]] == [
        (["body", "file"], "Field required")
    ]


def test_a_request_without_a_body_is_422_naming_file(client: httpx.Client) -> None:
    response = client.post("/thumbnails")

    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["body", "file"]]


def test_a_file_field_that_is_not_a_file_is_422_naming_it(client: httpx.Client) -> None:
    response = client.post("/thumbnails", data={"file": "cat.png"})

    assert response.status_code == 422, response.text
    assert [(error["loc"], error["msg"]) for error in response.json()["detail"]] == [
        (["body", "file"], "Must be a file (a part with a filename)")
    ]


def test_an_empty_file_is_422_with_a_clear_message(client: httpx.Client, server: Server) -> None:
    before = server.files()

    response = upload(client, b"")

    assert response.status_code == 422, response.text
    assert response.json() == {"detail": "The file is empty: send a PNG, JPEG, GIF or WebP."}
    assert server.files() == before


# UPLOAD_DIR: private, and emptied ---------------------------------------------------------------


def test_by_default_uploads_go_to_a_folder_in_the_users_home_that_only_the_user_can_open(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "UPLOAD_DIR"}
    api = UvicornServer("tests.stage4.upload_app:app", env={**env, "HOME": str(home)}, log_dir=tmp_path)
    request.addfinalizer(api.stop)
    api.start()

    with httpx.Client(base_url=api.base_url, timeout=10) as client:
        response = upload(client, encoded(halves(60, 30), "PNG"))

    assert response.status_code == 200, response.text
    folder = home / ".cache" / "stage4_rq_dramatiq" / "uploads"
    assert (folder / "thumbnails" / response.json()["thumbnail_url"].removeprefix("/thumbnails/")).is_file()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "thumbnails").stat().st_mode) == 0o700


def start_api_with_upload_dir(folder: Path, log_dir: Path, request: pytest.FixtureRequest) -> UvicornServer:
    api = UvicornServer("tests.stage4.upload_app:app", env={**os.environ, "UPLOAD_DIR": str(folder)}, log_dir=log_dir)
    request.addfinalizer(api.stop)
    return api


def test_an_upload_dir_that_others_may_open_is_refused_at_start(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)  # whatever the umask
    api = start_api_with_upload_dir(folder, tmp_path, request)

    with pytest.raises(WaitTimeout, match="stopped while waiting") as refused:
        api.start()

    assert f"UPLOAD_DIR {folder} is open to other users (mode 755): make it yours alone (chmod 700 {folder})" in str(
        refused.value
    )


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a folder away needs root")
def test_an_upload_dir_of_another_user_is_refused_at_start(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    folder = tmp_path / "uploads"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)  # nobody's
    api = start_api_with_upload_dir(folder, tmp_path, request)

    with pytest.raises(WaitTimeout, match="stopped while waiting") as refused:
        api.start()

    assert f"UPLOAD_DIR {folder} belongs to another user (uid 65534)" in str(refused.value)


# The stage's own API and workers, with a queue of this module's own (database 6) and an UPLOAD_DIR of its own.
OWN_QUEUE_DB = 6


@pytest.fixture(scope="module")
def stage_uploads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stage-uploads")


@pytest.fixture(scope="module")
def stage_settings(stage_env: dict[str, str], private_redis: RedisService, stage_uploads: Path) -> dict[str, str]:
    return {**stage_env, "REDIS_URL": with_database(private_redis.url, OWN_QUEUE_DB), "UPLOAD_DIR": str(stage_uploads)}


@pytest.fixture(scope="module")
def stage_client(stage_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    env = {**os.environ, **stage_settings}
    with (
        UvicornServer(f"{STAGE_NAME}.main:app", env=env, log_dir=tmp_path_factory.mktemp("stage-api")) as api,
        httpx.Client(base_url=api.base_url, timeout=10) as client,
    ):
        yield client


def originals(folder: Path) -> set[str]:
    """The uploads waiting in UPLOAD_DIR for their job."""
    return {path.name for path in folder.iterdir() if STORED_NAME.fullmatch(path.name)}


def post_upload(client: httpx.Client, library: str, content: bytes, folder: Path) -> tuple[str, str]:
    """POST an upload to ``library`` while no worker runs: its status URL, and the name it is stored under."""
    before = originals(folder)
    response = client.post(f"/{library}/thumbnails", files={"file": ("picture.png", content)})
    assert response.status_code == 202, response.text
    (stored_name,) = originals(folder) - before
    return response.json()["status_url"], stored_name


@pytest.mark.parametrize("library", LIBRARIES)
def test_after_its_job_an_upload_leaves_only_its_thumbnail_or_nothing_if_the_job_failed(
    library: str,
    stage_client: httpx.Client,
    stage_settings: dict[str, str],
    stage_uploads: Path,
    start_worker: Callable[..., ManagedProcess],
) -> None:
    picture = encoded(halves(300, 100), "PNG")
    broken = encoded(Image.effect_noise((200, 100), 50).convert("RGB"), "PNG")
    broken = broken[: len(broken) // 2]  # its header is whole, so the API takes it; the worker cannot decode it
    made_url, made_name = post_upload(stage_client, library, picture, stage_uploads)
    failed_url, failed_name = post_upload(stage_client, library, broken, stage_uploads)

    start_worker(library, **stage_settings)
    made = wait_for_status(stage_client, made_url, "succeeded", timeout=20)
    failed = wait_for_status(stage_client, failed_url, "failed", timeout=20)

    made_stem, failed_stem = Path(made_name).stem, Path(failed_name).stem
    assert made["result"]["thumbnail_url"] == f"/thumbnails/{made_stem}.png"
    assert "image file is truncated" in failed["error"]
    left = {path.relative_to(stage_uploads).as_posix() for path in stage_uploads.rglob("*")}
    assert {name for name in left if made_stem in name} == {f"thumbnails/{made_stem}.png"}  # the upload is gone
    assert {name for name in left if failed_stem in name} == set()  # no upload, no thumbnail
    assert [name for name in left if name.endswith(".partial")] == []


def test_each_upload_sweeps_away_what_uploads_older_than_a_job_result_left(
    stage_client: httpx.Client, stage_uploads: Path
) -> None:
    (stage_uploads / "thumbnails").mkdir(exist_ok=True)
    day_and_a_minute_ago = time.time() - 86400 - 60  # RESULT_EXPIRES_SECONDS: a day
    old = [
        stage_uploads / f"{os.urandom(16).hex()}.jpg",  # an upload whose job never ran
        stage_uploads / "thumbnails" / f"{os.urandom(16).hex()}.png",
        stage_uploads / "thumbnails" / f".{os.urandom(16).hex()}.partial",  # a worker killed while writing
    ]
    kept = [
        stage_uploads / "thumbnails" / f"{os.urandom(16).hex()}.png",  # a young thumbnail
        stage_uploads / "notes.txt",  # not a name the server gives out
    ]
    for path in old + kept:
        path.write_bytes(b"x")
    for path in [*old, kept[1]]:
        os.utime(path, (day_and_a_minute_ago, day_and_a_minute_ago))

    response = stage_client.post("/celery/thumbnails", files={"file": ("a.png", encoded(halves(60, 30), "PNG"))})

    assert response.status_code == 202, response.text
    assert [path.name for path in old if path.exists()] == []
    assert [path.name for path in kept if path.exists()] == [path.name for path in kept]


# make_thumbnail, called as a worker calls it ----------------------------------------------------


@pytest.fixture(scope="module")
def uploads_module() -> ModuleType:
    """thumbnails.py (what a worker calls) and the config.py it imports, without the rest of the stage.

    Importing the stage's package would create its Celery app in this process, with settings read
    now, before the fixtures of the stage's other tests choose them (see tests/celery_stage.py).
    """
    package = ModuleType("stage4_uploads_alone")
    package.__path__ = [str(STAGE)]
    sys.modules[package.__name__] = package
    return importlib.import_module(f"{package.__name__}.thumbnails")


@pytest.fixture
def uploads(uploads_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setattr(uploads_module.settings, "upload_dir", str(tmp_path / "uploads"))
    monkeypatch.setattr(uploads_module.settings, "thumbnail_size", THUMBNAIL_SIZE)
    return uploads_module


def stored(uploads: ModuleType, content: bytes, extension: str) -> str:
    """Put a file in UPLOAD_DIR as the API does, under a name of the server's kind."""
    name = os.urandom(16).hex() + extension
    uploads.upload_dir().mkdir(parents=True, exist_ok=True)
    (uploads.upload_dir() / name).write_bytes(content)
    return name


def thumbnail_of(uploads: ModuleType, result: dict[str, Any]) -> Image.Image:
    name = result["thumbnail_url"].removeprefix("/thumbnails/")
    image = Image.open(uploads.thumbnail_dir() / name)
    assert (image.format, image.size) == ("PNG", (result["width"], result["height"]))
    return image


def test_make_thumbnail_shrinks_the_longest_side_to_128_keeping_the_proportions(uploads: ModuleType) -> None:
    name = stored(uploads, encoded(halves(1000, 500), "PNG"), ".png")

    result = uploads.make_thumbnail(name)

    assert result == {"thumbnail_url": f"/thumbnails/{name}", "width": 128, "height": 64}
    with thumbnail_of(uploads, result):
        pass


def test_make_thumbnail_does_not_enlarge_a_small_image(uploads: ModuleType) -> None:
    name = stored(uploads, encoded(halves(50, 20), "GIF"), ".gif")

    result = uploads.make_thumbnail(name)

    assert (result["width"], result["height"]) == (50, 20)
    with thumbnail_of(uploads, result):
        pass


# The large one is decoded at an eighth of its size (Image.draft), then turned: the same picture.
@pytest.mark.parametrize(("width", "height"), [(200, 100), (4000, 2000)], ids=["small", "large"])
def test_make_thumbnail_turns_a_photo_as_its_exif_orientation_says(
    uploads: ModuleType, width: int, height: int
) -> None:
    # Orientation 6: the camera was turned a quarter clockwise; shown upright, the left side is on top.
    exif = Image.Exif()
    exif[0x0112] = 6
    name = stored(uploads, encoded(halves(width, height), "JPEG", exif=exif), ".jpg")

    result = uploads.make_thumbnail(name)

    assert (result["width"], result["height"]) == (64, 128)
    with thumbnail_of(uploads, result) as thumbnail:
        top, bottom = thumbnail.getpixel((32, 10)), thumbnail.getpixel((32, 118))
    assert is_red(top) and is_blue(bottom), f"top {top} should be red, bottom {bottom} blue"


def test_make_thumbnail_of_a_cmyk_jpeg_is_an_rgb_png(uploads: ModuleType) -> None:
    name = stored(uploads, encoded(halves(300, 150).convert("CMYK"), "JPEG"), ".jpg")

    result = uploads.make_thumbnail(name)

    assert (result["width"], result["height"]) == (128, 64)
    with thumbnail_of(uploads, result) as thumbnail:
        assert thumbnail.mode == "RGB"
        left, right = thumbnail.getpixel((10, 32)), thumbnail.getpixel((118, 32))
    assert is_red(left) and is_blue(right), f"left {left} should be red, right {right} blue"


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..\\..\\x.png",
        "../" + "0" * 32 + ".png",
        "0" * 32 + ".png\n",
        "0" * 32 + ".PNG",
        "0" * 32 + ".txt",
    ],
)
def test_make_thumbnail_takes_only_the_name_of_a_stored_upload(uploads: ModuleType, name: str) -> None:
    # A message is input like any other: a worker opens no path a message names.
    with pytest.raises(ValueError, match="is not the name of a stored upload"):
        uploads.make_thumbnail(name)


def test_make_thumbnail_deletes_the_upload_once_its_thumbnail_is_made(uploads: ModuleType) -> None:
    name = stored(uploads, encoded(halves(300, 100), "PNG"), ".png")

    uploads.make_thumbnail(name)

    left = {path.relative_to(uploads.upload_dir()).as_posix() for path in uploads.upload_dir().rglob("*")}
    assert left == {"thumbnails", f"thumbnails/{Path(name).stem}.png"}


def test_make_thumbnail_run_again_after_it_made_the_thumbnail_answers_the_same(uploads: ModuleType) -> None:
    # At least once: a worker that dies after the job, before its acknowledgement, has the job run again.
    name = stored(uploads, encoded(halves(300, 100), "PNG"), ".png")

    first = uploads.make_thumbnail(name)
    again = uploads.make_thumbnail(name)

    assert again == first


def test_make_thumbnail_of_an_upload_that_is_gone_says_where_it_looked(uploads: ModuleType) -> None:
    name = os.urandom(16).hex() + ".png"

    with pytest.raises(FileNotFoundError, match=f"No upload {name} in {re.escape(str(uploads.upload_dir()))}"):
        uploads.make_thumbnail(name)


# In a fresh process: how much a make_thumbnail call grows its peak memory (ru_maxrss, KiB on Linux).
PEAK_GROWTH = """
import resource, sys
from stage4_rq_dramatiq import thumbnails
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
thumbnails.make_thumbnail(sys.argv[1])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss counts KiB on Linux (bytes on macOS)")
def test_a_thumbnail_job_of_a_photo_at_the_pixel_cap_decodes_a_fraction_of_it(tmp_path: Path) -> None:
    # 24 million pixels, turned by EXIF. Decoded whole, then turned: the job grew the process by 88 MB
    # (measured). Decoded at an eighth of its size, and turned once small: by nothing measurable.
    exif = Image.Exif()
    exif[0x0112] = 6
    folder = tmp_path / "uploads"
    folder.mkdir()
    name = os.urandom(16).hex() + ".jpg"
    halves(6000, 4000).save(folder / name, "JPEG", exif=exif)
    env = {**os.environ, "UPLOAD_DIR": str(folder)}

    measured = subprocess.run(
        [sys.executable, "-c", PEAK_GROWTH, name], env=env, cwd=STAGE.parent, capture_output=True, text=True, timeout=60
    )

    assert measured.returncode == 0, measured.stderr
    grown_mb = int(measured.stdout) / 1024
    assert grown_mb < 24, f"the job grew its process by {grown_mb:.0f} MB: a quarter of a whole decode (96 MB) or more"


# For stage 5's test of an upload whose publish timed out, run here with Celery's route.
@pytest.fixture
def stage_package() -> str:
    return STAGE_NAME


@pytest.fixture
def thumbnails_route() -> str:
    return "/celery/thumbnails"
