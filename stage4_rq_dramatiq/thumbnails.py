"""Thumbnails, made in a worker from a stored upload: the same function for Celery, RQ and Dramatiq.

Kept apart from uploads.py, which is the API's side, so that a worker imports Pillow but not
FastAPI: an RQ job imports its module anew in every forked child, so each import costs each job.
"""

import re
import uuid
from pathlib import Path
from typing import IO, Any

from PIL import Image, ImageOps

# Part of the stage4_rq_dramatiq package; in a flat project: from config import settings
from .config import settings

# The formats taken, and the extension each is stored under. Image.open tries only these decoders:
# Pillow knows dozens more (its EPS decoder runs Ghostscript), and an upload has no business reaching them.
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp"}

# The most pixels an upload may decode to (a 6000x4000 camera photo has 24 million). Pillow's own limit is
# far higher (89 million, and below twice that only a warning): a PNG of under 1 MB could take 700 MB in a
# worker. At this cap a job took at most (measured, see the README): 3 MB for a JPEG, 71 MB if progressive,
# 24 MB for a GIF, 96 MB for a PNG (192 MB with transparency), 390 MB for a WebP (Pillow decodes it whole,
# and holds it four times). A worker that runs N jobs at once needs N times that.
MAX_IMAGE_PIXELS = 25_000_000

# Checked with fullmatch: re.match(r"...$") would also take a name that ends in a newline.
STORED_NAME = re.compile(r"[0-9a-f]{32}\.(?:png|jpg|gif|webp)")
THUMBNAIL_NAME = re.compile(r"[0-9a-f]{32}\.png")
# What the thumbnails folder holds: thumbnails, and thumbnails being written (see make_thumbnail).
THUMBNAIL_FILE = re.compile(r"[0-9a-f]{32}\.png|\.[0-9a-f]{32}\.partial")


class NotAnImage(ValueError):
    """The bytes are not an image of a format this server takes."""


class ImageTooLarge(ValueError):
    """The image would decode to more pixels than MAX_IMAGE_PIXELS."""


def upload_dir() -> Path:
    return Path(settings.upload_dir)


def thumbnail_dir() -> Path:
    return upload_dir() / "thumbnails"


def open_image(file: IO[bytes]) -> Image.Image:
    """Open an image for reading: Image.open reads the header only, so nothing large is decoded yet."""
    try:
        image = Image.open(file, formats=list(EXTENSIONS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own check, for images far over ours (a warning becomes an error under `python -W error`).
        raise ImageTooLarge(f"The image decodes to more than {MAX_IMAGE_PIXELS} pixels, the most taken.") from None
    except (OSError, SyntaxError, ValueError) as error:  # UnidentifiedImageError, or a header Pillow cannot read
        raise NotAnImage("The file is not a PNG, JPEG, GIF or WebP image (judged by its bytes).") from error
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise ImageTooLarge(
            f"The image is {width}x{height} pixels once decoded; the most taken is {MAX_IMAGE_PIXELS} pixels."
        )
    return image


def make_thumbnail(stored_name: str) -> dict[str, Any]:
    """Make the PNG thumbnail of a stored upload (each library's task calls this, in a worker).

    The upload is deleted when the job ends, made or failed: no library retries this job, so
    nothing would read it again. (A worker killed mid-job ends nothing: the job, run again, finds it.)
    """
    # The name comes from a message: checked like any input, so no message makes a worker open another path.
    if not STORED_NAME.fullmatch(stored_name):
        raise ValueError(f"{stored_name!r} is not the name of a stored upload.")
    upload = upload_dir() / stored_name
    name = Path(stored_name).stem + ".png"
    made = thumbnail_dir() / name
    if not upload.exists():
        if made.exists():  # this job ran already, and its worker died before the acknowledgement
            with Image.open(made) as thumbnail:
                return thumbnail_result(name, thumbnail)
        raise FileNotFoundError(
            f"No upload {stored_name} in {upload_dir()}: its job ran already, or it expired, or this "
            "worker's UPLOAD_DIR is not the API's."
        )
    try:
        with open(upload, "rb") as file, open_image(file) as image:
            # thumbnail() decodes a JPEG at 1/2, 1/4 or 1/8 of its size (Image.draft), just above
            # the size asked; a PNG, GIF or WebP is decoded whole, then shrunk in place.
            image.thumbnail((settings.thumbnail_size,) * 2)  # keeps the proportions, never enlarges
            # A camera saves a photo as its sensor saw it, with an EXIF tag that says how to turn it
            # upright: turned now that it is small (the box is square, so its size is the same).
            thumbnail = ImageOps.exif_transpose(image)
        if thumbnail.mode == "CMYK":  # a print-ready JPEG: PNG has no CMYK
            thumbnail = thumbnail.convert("RGB")
        thumbnail_dir().mkdir(mode=0o700, exist_ok=True)
        # Written under another name, then renamed: GET never serves half a file, and a job run twice replaces it.
        partial = thumbnail_dir() / f".{uuid.uuid4().hex}.partial"
        try:
            thumbnail.save(partial, format="PNG")
            partial.replace(made)
        finally:
            partial.unlink(missing_ok=True)
    finally:
        upload.unlink(missing_ok=True)
    return thumbnail_result(name, thumbnail)


def thumbnail_result(name: str, thumbnail: Image.Image) -> dict[str, Any]:
    return {"thumbnail_url": f"/thumbnails/{name}", "width": thumbnail.width, "height": thumbnail.height}
