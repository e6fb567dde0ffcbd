"""Refuse a bad image before any expensive work, each with its own stable code.

Order: empty file, format sniffed from the bytes, pixel count from the header alone (decompression bombs), then
a full decode through :func:`imgorigin.images.load_image` (truncated or corrupt data). Messages carry the
client's file name, never the server's path.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from PIL import Image

from imgorigin.images import ImageError, load_image
from imgorigin.service.errors import ServiceError
from imgorigin.service.uploads import READABLE_FORMATS, Upload

#: Decoded size used to check images whose consumer resizes them itself (attribution backbones).
CHECK_SIZE = (64, 64)


def check_upload(upload: Upload, channels: int, size: tuple[int, int] | None, max_pixels: int) -> None:
    """Raise a ServiceError (415 or 422) for an upload no model could read; return quietly for a good one."""
    name = upload.name
    if upload.size == 0:
        raise ServiceError(422, "empty_file", f"{name}: empty file (0 bytes)")
    if upload.format not in READABLE_FORMATS:
        found = f"a {upload.format} file" if upload.format else "not a recognised image format"
        raise ServiceError(
            415, "unsupported_format", f"{name}: {found} (by its bytes); send PNG, JPEG, WebP, BMP or TIFF"
        )
    width, height = _header_size(upload)
    if width * height > max_pixels:
        raise ServiceError(
            422, "too_many_pixels", f"{name}: {width}x{height} pixels is over the limit of {max_pixels} pixels"
        )
    try:
        load_image(upload.path, channels, size or CHECK_SIZE, max_pixels=max_pixels, max_bytes=upload.size)
    except ImageError as err:
        raise ServiceError(422, "undecodable_image", f"{name}: {err.message}") from None


def check_uploads(uploads: Sequence[Upload], channels: int, size: tuple[int, int] | None, max_pixels: int) -> None:
    """Check every upload of a request; the first bad one refuses the request."""
    if not uploads:
        raise ServiceError(400, "no_images", "send one or more image files in the 'images' field")
    for upload in uploads:
        check_upload(upload, channels, size, max_pixels)


def _header_size(upload: Upload) -> tuple[int, int]:
    """(width, height) from the header, without decoding pixels; a header Pillow calls a bomb is over any cap."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(upload.path, formats=[upload.format]) as image:
                return image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ServiceError(422, "too_many_pixels", f"{upload.name}: {err}") from None
    except Exception as err:  # Pillow raises assorted errors on corrupt headers
        raise ServiceError(
            422, "undecodable_image", f"{upload.name}: unreadable {upload.format} header ({err})"
        ) from None
