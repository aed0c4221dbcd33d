"""Thumbnails, made in a worker (of the reports queue) from a stored upload.

Kept apart from uploads.py, which is the API's side, so that a worker imports Pillow but not FastAPI.
"""

import re
import uuid
from pathlib import Path
from typing import IO, Any

from PIL import Image, ImageOps

# Part of the stage5_monitoring package; in a flat project: from config import settings
from .config import settings

# The formats taken, and the extension each is stored under. Image.open tries only these decoders:
# Pillow knows dozens more (its EPS decoder runs Ghostscript), and an upload has no business reaching them.
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp"}

# The most pixels an upload may decode to (a 6000x4000 camera photo has 24 million). A decoded pixel
# takes up to 4 bytes, so this keeps a job under about 100 MB. Pillow's own limit is far higher
# (89 million, and below twice that only a warning): a PNG of under 1 MB could take 700 MB in a worker.
MAX_IMAGE_PIXELS = 25_000_000

# Checked with fullmatch: re.match(r"...$") would also take a name that ends in a newline.
STORED_NAME = re.compile(r"[0-9a-f]{32}\.(?:png|jpg|gif|webp)")
THUMBNAIL_NAME = re.compile(r"[0-9a-f]{32}\.png")


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
    """Make the PNG thumbnail of a stored upload (each library's task calls this, in a worker)."""
    # The name comes from a message: checked like any input, so no message makes a worker open another path.
    if not STORED_NAME.fullmatch(stored_name):
        raise ValueError(f"{stored_name!r} is not the name of a stored upload.")
    size = settings.thumbnail_size
    with open(upload_dir() / stored_name, "rb") as file, open_image(file) as image:
        # A camera saves a photo as its sensor saw it, with an EXIF tag that says how to turn it upright.
        thumbnail = ImageOps.exif_transpose(image)
    thumbnail.thumbnail((size, size))  # keeps the proportions, never enlarges
    if thumbnail.mode == "CMYK":  # a print-ready JPEG: PNG has no CMYK
        thumbnail = thumbnail.convert("RGB")
    name = Path(stored_name).stem + ".png"
    folder = thumbnail_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # Written under another name, then renamed: GET never serves half a file, and a retried job replaces it.
    partial = folder / f".{uuid.uuid4().hex}.partial"
    try:
        thumbnail.save(partial, format="PNG")
        partial.replace(folder / name)
    finally:
        partial.unlink(missing_ok=True)
    return {"thumbnail_url": f"/thumbnails/{name}", "width": thumbnail.width, "height": thumbnail.height}
