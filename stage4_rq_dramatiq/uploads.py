"""Image uploads and thumbnails, the same for Celery, RQ and Dramatiq.

The seed did `open(f"/tmp/{file.filename}", "wb").write(await file.read())`: the client chose
the path (`../../etc/passwd`), any size was read into memory, and anything called `.png` was
trusted. Here, before any job exists:
- the server names the file (a random name, with the extension of the format it detected);
- the body is counted while it arrives, and reading stops at UPLOAD_MAX_BYTES (413);
- the bytes decide what the file is (415), and an image too large once decoded is refused (422).
A job then carries the stored file's name, never its bytes: every worker must see the same
UPLOAD_DIR (on other machines, shared storage). The job deletes the upload; what is left after a
job's result has expired (its thumbnail, an upload whose job never ran) is swept by later uploads.
"""

import hashlib
import os
import shutil
import stat
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse

from .config import settings
from .hardening import Idempotency, RedisTrouble
from .jobs import JobAccepted, asked_for
from .thumbnails import (
    EXTENSIONS,
    STORED_NAME,
    THUMBNAIL_FILE,
    THUMBNAIL_NAME,
    ImageTooLarge,
    NotAnImage,
    open_image,
    thumbnail_dir,
)
from .thumbnails import upload_dir as upload_dir

# The form around the file (boundary lines, part headers) may add this much to the body.
FORM_OVERHEAD_BYTES = 16 * 1024

# For /docs: stored_image reads the form itself (to count its bytes), so FastAPI cannot describe it.
UPLOAD_FORM_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "contentMediaType": "application/octet-stream"}},
                }
            }
        },
    }
}


class UnsafeUploadDir(RuntimeError):
    """UPLOAD_DIR belongs to another user, or other users may open it."""


def prepare_upload_dir() -> None:
    """Make UPLOAD_DIR and its thumbnails folder, yours alone (mode 700); refuse them if they are not."""
    for folder in (upload_dir(), thumbnail_dir()):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.name != "posix":
            continue  # Windows has no owner ids and modes: its folders in your home are yours
        found = folder.stat()
        if found.st_uid != os.geteuid():
            raise UnsafeUploadDir(
                f"UPLOAD_DIR {folder} belongs to another user (uid {found.st_uid}): choose a folder of your own."
            )
        if found.st_mode & 0o077:
            mode = stat.S_IMODE(found.st_mode)
            raise UnsafeUploadDir(
                f"UPLOAD_DIR {folder} is open to other users (mode {mode:o}): "
                f"make it yours alone (chmod 700 {folder}) or choose another."
            )


# When the API starts: a folder another user made first (or may read) must not hold the uploads.
prepare_upload_dir()


def sweep_old_uploads() -> None:
    """Delete what uploads older than a job's result (RESULT_EXPIRES_SECONDS) left: thumbnails nobody
    can find any more, uploads whose job never ran, thumbnails half written by a worker that died."""
    oldest = time.time() - settings.result_expires_seconds
    for folder, ours in ((upload_dir(), STORED_NAME), (thumbnail_dir(), THUMBNAIL_FILE)):
        for path in folder.iterdir():
            # Another API process may sweep at the same time: a file gone meanwhile is fine.
            with suppress(FileNotFoundError):
                if ours.fullmatch(path.name) and path.lstat().st_mtime < oldest:
                    path.unlink()


def _too_large() -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"The file is larger than {settings.upload_max_bytes} bytes, the most this server takes.",
    )


def _counting_body(request: Request, limit: int) -> Request:
    """The same request, whose body stops with a 413 as soon as more than ``limit`` bytes have come in."""
    received = 0

    async def receive() -> dict[str, Any]:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _too_large()
        return message

    return Request(request.scope, receive)


def _check_and_store(file: IO[bytes]) -> str:
    size = file.seek(0, os.SEEK_END)
    if size > settings.upload_max_bytes:  # exactly, now: the body's limit left room for the form around the file
        raise _too_large()
    if size == 0:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "The file is empty: send a PNG, JPEG, GIF or WebP.")
    file.seek(0)
    try:
        with open_image(file) as image:
            # A JPEG with more than one picture in it (some cameras make them) opens as "MPO".
            image_format = "JPEG" if image.format == "MPO" else image.format
    except NotAnImage as error:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(error)) from None
    except ImageTooLarge as error:
        # 422, not 413 (the bytes are within the limit) nor 415 (it is an image): it is the content we refuse.
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None
    # The client's filename plays no part: a random name, the extension of what the bytes are.
    stored_name = uuid.uuid4().hex + EXTENSIONS[image_format]
    prepare_upload_dir()  # again: a folder deleted since the start is made anew
    file.seek(0)
    with open(upload_dir() / stored_name, "xb") as stored:  # "x": a new file, never an overwrite
        shutil.copyfileobj(file, stored)
    # Each upload clears away the old ones: the folder grows only as fast as a day's uploads.
    sweep_old_uploads()
    return stored_name


async def stored_image(request: Request) -> str:
    """The multipart field `file`, checked and stored under a name of the server's: that name.

    Starlette's form parser reads the whole body before an `UploadFile` parameter is filled in,
    so this dependency reads the form itself, from a body that counts its bytes.
    """
    body_limit = settings.upload_max_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > body_limit:
        raise _too_large()  # said in advance: refused before a byte is read
    # A chunked body has no Content-Length: it is stopped where it crosses the limit.
    form = await _counting_body(request, body_limit).form(max_files=1, max_fields=10)
    try:
        upload = form.get("file")
        if upload is None:
            raise RequestValidationError([{"type": "missing", "loc": ("body", "file"), "msg": "Field required"}])
        if isinstance(upload, str):
            message = "Must be a file (a part with a filename)"
            raise RequestValidationError([{"type": "value_error", "loc": ("body", "file"), "msg": message}])
        # Disk and Pillow calls block: a thread keeps the event loop free.
        return await run_in_threadpool(_check_and_store, upload.file)
    finally:
        await form.close()


StoredImage = Annotated[str, Depends(stored_image)]


def enqueue_upload(
    stored_name: str, idempotency: Idempotency | None, enqueue_it: Callable[..., JobAccepted]
) -> JobAccepted:
    """Enqueue the thumbnail job of a stored upload with a library's enqueue (see main.py)."""
    stored = upload_dir() / stored_name
    # The stored name is new each time: the same image is the same request, another image another one.
    asked = asked_for("thumbnail", hashlib.sha256(stored.read_bytes()).hexdigest()) if idempotency else None
    # Not kept when no job will read it: a refused request, or a repeat (the first one's file is the job's).
    discard = partial(stored.unlink, missing_ok=True)
    try:
        return enqueue_it(on_repeat=discard, asked=asked)
    except RedisTrouble as trouble:
        # Redis may still run a publish that timed out: then the job will need the file (if none
        # does, a later upload's sweep takes it).
        if not trouble.timed_out:
            discard()
        raise
    except HTTPException:
        discard()
        raise


router = APIRouter()


@router.get("/thumbnails/{name}", response_class=FileResponse, responses={200: {"content": {"image/png": {}}}})
def get_thumbnail(name: str) -> FileResponse:
    # Only names this server gives out, and only in the thumbnails folder: a name with /, \ or ..
    # (however it was encoded) does not match, and never reaches the file system. Never through
    # a link either: one planted in the folder could point anywhere (/etc/passwd).
    path = thumbnail_dir() / name
    if not THUMBNAIL_NAME.fullmatch(name) or path.is_symlink() or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "No such thumbnail.")
    return FileResponse(path, media_type="image/png")
