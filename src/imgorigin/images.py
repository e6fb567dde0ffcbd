"""Image input shared by every imgorigin command: find, read, validate, decode and normalise user images.

Finding inputs: :func:`scan_inputs` expands the paths given into the files to load plus one skip entry per file
it leaves out, so every input is accounted for (see its docstring for the rules and the reason codes); a skip
entry is the record ``{"path", "skipped": <reason code>, "detail": <human-readable text>}``.
:func:`find_images` is the same without the skip entries.

Every file goes through the same explicit pipeline, and every change made to it is recorded in
``LoadedImage.reasons`` so that verification and attribution records say exactly what the model saw:

1. The file is opened without blocking (``O_NONBLOCK``) and only if it is a regular file (checked with
   ``fstat`` on the opened descriptor, so a FIFO, a device such as ``/dev/zero`` or a socket, directly or
   through a symlink, is refused and never read); at most ``max_bytes`` are read. The bytes are read once,
   hashed (sha256) and decoded from memory.
2. Pillow opens them (PNG, JPEG, WebP, BMP or TIFF only) and the header size is checked against
   ``max_pixels`` before any pixel is decoded (decompression bombs).
3. The first frame is fully decoded with ``.load()``. Truncated data is always an error, even when some
   other code has set ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``. Multi-frame files (animated PNG/WebP,
   multi-page TIFF) contribute their first frame only; this is not a reason code.
   When a target ``size`` is given and the image is at least 4x larger along an axis, it is reduced while still
   in its 8-bit (or 16-bit greyscale) mode so that memory follows the target size, not the declared size:
   JPEG decodes at 1/2, 1/4 or 1/8 scale (Pillow ``draft``), other formats are box-averaged by an integer factor
   (``Image.reduce``), in both cases to no less than twice the target size; the pixels then differ slightly
   from a full-resolution decode (``reduced_before_resize``). Images under 4x the target (and 32-bit integer
   or float images) take the exact path. The decoded first frame itself is bounded by ``max_pixels``.
4. EXIF orientation is applied (``exif_rotated``).
5. Modes are normalised. 8-bit data (L, LA, RGB, RGBA, P, 1, CMYK, YCbCr, LAB, ...) is handled in 8 bits with
   Pillow's own conversions (``mode_converted``); alpha, including palette and colour-key transparency, is
   composited onto black with round-to-nearest (``alpha_removed``, recorded whenever an alpha channel is
   dropped, even a fully opaque one); RGB -> 1 channel is Pillow's "L" luma (ITU-R 601-2) and
   1 -> 3 channels replicates the grey level (both ``mode_converted``). 16-bit greyscale (I;16, I;16B, I)
   is scaled by 1/65535 (``high_bit_depth_reduced``); 16-bit colour PNG/TIFF, which Pillow reduces to 8 bits
   by keeping the high byte, is flagged with the same reason. Float data (F) is accepted only in [0, 1].
6. Values become float32 in [0, 1]: 8-bit ``k`` -> ``k / 255`` exactly, so an un-resized 8-bit image
   round-trips with ``save_png`` / ``quantize_8bit``.
7. Resizing (``resized``, one warning on the ``imgorigin`` logger) is done last, in float32, per channel
   with Pillow on mode "F" images, then clamped to [0, 1] (bicubic and Lanczos overshoot); deterministic.

JPEG sources (including MPO, which Pillow reports for multi-picture JPEGs) get ``recompressed_jpeg``:
the pixels went through lossy compression after the generator produced them; lossy WebP files (a ``VP8 `` image
chunk) get ``lossy_webp`` for the same reason. What the file itself shows about its processing is in
``LoadedImage.processing`` (see :func:`processing_info`): the format, whether it is lossy, the JPEG quality
estimated from the quantisation tables (the IJG quality scaling inverted), the WebP kind, and whether the decoded
size is the target size.

Paths are ``str`` (or ``Path``) throughout; a file name that is not valid UTF-8 is the usual surrogate-escaped
``str`` (``os.fsdecode`` of its bytes), which ``imgorigin.records`` writes losslessly.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import math
import os
import stat
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
from PIL import ExifTags, Image, ImageFile

from imgorigin.errors import ImgoriginError

if TYPE_CHECKING:  # torch loads only when a tensor is asked for: scanning and loading need numpy alone
    import torch

logger = logging.getLogger("imgorigin")

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS: int = 64 * 1024 * 1024
DEFAULT_MAX_BYTES: int = 256 * 1024 * 1024
#: Why ``scan_inputs`` left a file out (the ``skipped`` field of its skip entries).
SKIP_REASONS: tuple[str, ...] = (
    "hidden",
    "unsupported_extension",
    "not_regular_file",
    "broken_symlink",
    "symlink_loop",
    "duplicate",
    "unreadable",
)

_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF")
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_EIGHT_BIT_MODES = frozenset({"L", "LA", "RGB", "RGBA"})
_WITH_ALPHA = {"L": "LA", "RGB": "RGBA", "LA": "LA", "RGBA": "RGBA"}
# Modes Pillow converts to one of _EIGHT_BIT_MODES; anything else goes through Pillow's "RGB" conversion.
_CONVERT_TO = {"1": "L", "PA": "RGBA", "La": "LA", "RGBa": "RGBA"}
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = frozenset({5, 6, 7, 8})
# Modes Image.reduce averages meaningfully as they are, and those converted first (exactly) to one of them.
_REDUCIBLE = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "LAB"})
_SIXTEEN_BIT_GREY = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class ImageError(ImgoriginError, ValueError):
    """A file that cannot be used as an image; ``str(err)`` is ``"<path>: <what is wrong>"``."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(os.fspath(path), message)

    @property
    def path(self) -> str:
        """The offending path, as given."""
        return self.args[0]

    @property
    def message(self) -> str:
        """What is wrong with the file, without the path."""
        return self.args[1]

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded image ready for a model, with its provenance and every change made to it."""

    path: str
    sha256: str
    pixels: np.ndarray
    width: int
    height: int
    format: str
    mode: str
    reasons: tuple[str, ...]
    #: What the file shows about its processing (:func:`processing_info`); empty for images not read from a file.
    processing: dict = field(default_factory=dict)

    def tensor(self) -> torch.Tensor:
        """The pixels as a float32 [C, H, W] tensor sharing memory with ``pixels``."""
        import torch

        return torch.from_numpy(self.pixels)


class _StrictTruncation:
    """Make Pillow raise on truncated data while any load is in progress, then restore the caller's flag.

    ``ImageFile.LOAD_TRUNCATED_IMAGES`` is a process-wide flag read during decoding; a depth counter under a
    lock keeps concurrent loads in several threads from restoring each other's temporary value.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._saved = ImageFile.LOAD_TRUNCATED_IMAGES
                ImageFile.LOAD_TRUNCATED_IMAGES = False
            self._depth += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = self._saved


_strict_truncation = _StrictTruncation()


def _paths(paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[str | os.PathLike[str]]:
    """Accept a single path where a list is expected, instead of iterating over its characters."""
    if isinstance(paths, str | os.PathLike):
        return [paths]
    return list(paths)


def scan_inputs(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[dict]]:
    """Expand files and folders into (files to load, skip entries): every file met is either loaded or skipped.

    Files given directly are kept as given, whatever their extension or kind, so that the loader reports what is
    wrong with them (an error record). Folders are walked recursively, following symlinked folders, sorted by
    their path relative to the folder; a file found there is loaded when it is a regular file with an extension
    in ``IMAGE_EXTENSIONS`` (case-insensitive). Every other entry gives one skip entry
    ``{"path", "skipped", "detail"}`` with ``skipped`` one of ``SKIP_REASONS``:

    * ``hidden``: the name starts with "." (a hidden folder is one entry; its contents are not listed);
    * ``unsupported_extension``: e.g. ``.gif`` or ``.txt``;
    * ``not_regular_file``: a FIFO, socket or device (directly or through a symlink);
    * ``broken_symlink`` and ``symlink_loop`` (a link to itself, or a folder link back to a folder it is in);
    * ``duplicate``: the same file (same device and inode: another spelling of the path, a symlink or a hard
      link) or folder as one met earlier, which is the one kept; the same path string twice is merged silently;
    * ``unreadable``: a sub-folder that cannot be listed, or an entry that cannot be examined.

    A path given that does not exist, or a given folder that cannot be listed, raises ImageError. An empty folder
    gives no files and no skip entries.
    """
    scan = _Scan()
    for given in _paths(paths):
        scan.add_given(given)
    return scan.images, scan.skipped


def find_images(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files :func:`scan_inputs` keeps, for callers that need no account of the files left out."""
    return scan_inputs(paths)[0]


def _skip(path: Path, reason: str, detail: str) -> dict:
    """The skip entry (a record) for a file or folder left out."""
    return {"path": str(path), "skipped": reason, "detail": detail}


def _listing(folder: Path) -> list[str]:
    """The entry names of a folder, sorted, read in one go (no descriptor stays open)."""
    with os.scandir(folder) as entries:
        return sorted(entry.name for entry in entries)


def _stat_failure(path: Path, err: OSError) -> tuple[str, str]:
    """The skip reason and detail for an entry that cannot be examined."""
    if err.errno == errno.ELOOP:
        return "symlink_loop", "symbolic link loop"
    if err.errno == errno.ENOENT and os.path.islink(path):
        return "broken_symlink", f"symbolic link to a missing target ({os.readlink(path)})"
    return "unreadable", f"cannot examine: {err.strerror or err}"


def _kind(mode: int) -> str:
    """What kind of non-regular file a stat mode describes, in words."""
    return next((name for test, name in _FILE_KINDS if test(mode)), "an unknown kind of file")


class _Scan:
    """One scan's state: the files kept, the skip entries, and the files and folders met (by device and inode)."""

    def __init__(self) -> None:
        self.images: list[Path] = []
        self.skipped: list[dict] = []
        self._files: dict[object, str] = {}
        self._folders: dict[tuple[int, int], str] = {}

    def add_given(self, given: str | os.PathLike[str]) -> None:
        """A path from the command line: a folder is walked, anything else is kept for the loader to judge."""
        path = Path(given)
        try:
            info = os.stat(path)
        except OSError:
            if not os.path.lexists(path):
                raise ImageError(given, "no such file or directory") from None
            self._add_file(path, ("unresolved", os.path.abspath(path)))  # the loader says what is wrong
            return
        if stat.S_ISDIR(info.st_mode):
            self._walk(path, (info.st_dev, info.st_ino))
        else:
            self._add_file(path, (info.st_dev, info.st_ino))

    def _add_file(self, path: Path, key: object) -> None:
        """Keep a file unless the same file was met before: merged when spelled the same, else ``duplicate``."""
        first = self._files.get(key)
        if first is None:
            self._files[key] = str(path)
            self.images.append(path)
        elif first != str(path):
            self.skipped.append(_skip(path, "duplicate", f"same file as {first}"))

    def _enter(self, folder: Path, key: tuple[int, int], ancestors: list[tuple[int, int]]) -> bool:
        """Whether to walk a folder: not when it was met before (a ``symlink_loop`` or ``duplicate`` entry)."""
        first = self._folders.get(key)
        if first is None:
            self._folders[key] = str(folder)
            return True
        if key in ancestors:
            self.skipped.append(_skip(folder, "symlink_loop", f"link to {first}, a folder it is inside"))
        elif first != str(folder):
            self.skipped.append(_skip(folder, "duplicate", f"same folder as {first}"))
        return False

    def _walk(self, root: Path, key: tuple[int, int]) -> None:
        """Walk a given folder depth first in name order with an explicit stack (no recursion limit)."""
        if not self._enter(root, key, []):
            return
        try:
            names = _listing(root)
        except OSError as err:
            raise ImageError(root, f"cannot list folder: {err.strerror or err}") from None
        stack = [(root, key, iter(names))]
        while stack:
            folder, _, names_left = stack[-1]
            name = next(names_left, None)
            if name is None:
                stack.pop()
            elif (entered := self._entry(Path(folder, name), [frame[1] for frame in stack])) is not None:
                stack.append(entered)

    def _entry(
        self, path: Path, ancestors: list[tuple[int, int]]
    ) -> tuple[Path, tuple[int, int], Iterator[str]] | None:
        """Keep or skip one folder entry; a folder to walk is returned as its stack frame."""
        if path.name.startswith("."):
            self.skipped.append(_skip(path, "hidden", "name starts with '.'"))
            return None
        try:
            info = os.stat(path)
        except OSError as err:
            self.skipped.append(_skip(path, *_stat_failure(path, err)))
            return None
        key = (info.st_dev, info.st_ino)
        if stat.S_ISDIR(info.st_mode):
            return self._folder(path, key, ancestors)
        if not stat.S_ISREG(info.st_mode):
            self.skipped.append(_skip(path, "not_regular_file", _kind(info.st_mode)))
        elif path.suffix.lower() not in IMAGE_EXTENSIONS:
            extension = path.suffix or "(none)"
            self.skipped.append(
                _skip(path, "unsupported_extension", f"extension {extension} is not an image type read")
            )
        else:
            self._add_file(path, key)
        return None

    def _folder(
        self, path: Path, key: tuple[int, int], ancestors: list[tuple[int, int]]
    ) -> tuple[Path, tuple[int, int], Iterator[str]] | None:
        """The stack frame of a sub-folder to walk, or None when it is skipped (met before, or unreadable)."""
        if not self._enter(path, key, ancestors):
            return None
        try:
            return path, key, iter(_listing(path))
        except OSError as err:
            self.skipped.append(_skip(path, "unreadable", f"cannot list folder: {err.strerror or err}"))
            return None


def _check_options(channels: int, size: tuple[int, int] | None, resample: str, max_pixels: int, max_bytes: int) -> None:
    """Raise ValueError for loader options that no file could satisfy."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if size is not None and (
        len(size) != 2 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise ValueError(f"size must be (height, width) with positive integers, got {size!r}")
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {', '.join(_RESAMPLE)}, got {resample!r}")
    if not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")


def load_image(
    path: str | os.PathLike[str],
    channels: int,
    size: tuple[int, int] | None = None,
    *,
    resample: str = "bicubic",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> LoadedImage:
    """Load one image as float32 [channels, H, W] in [0, 1], refusing bad files with ImageError.

    ``channels`` is 1 (Pillow "L" luma) or 3 (RGB); ``size`` is (height, width), or None to keep the
    decoded size; ``resample`` is nearest, box, bilinear, bicubic or lanczos. Files over ``max_bytes`` are
    refused unread; images with more than ``max_pixels`` pixels (or over Pillow's own ``Image.MAX_IMAGE_PIXELS``)
    are refused before decoding. See the module docstring for the pipeline and the reason codes.
    """
    name = os.fspath(path)
    try:
        _check_options(channels, size, resample, max_pixels, max_bytes)
    except ValueError as err:
        raise ImageError(name, str(err)) from None
    data = _read(name, max_bytes)
    reasons: list[str] = []
    with _strict_truncation, _open(name, data) as image:
        image_format, original_mode = image.format or "", image.mode
        processing = processing_info(image, data)
        if image_format in _JPEG_FORMATS:
            reasons.append("recompressed_jpeg")
        elif processing.get("webp") == "lossy":
            reasons.append("lossy_webp")
        _check_pixel_count(name, image, max_pixels)
        if _colour_samples_over_8_bits(image):
            reasons.append("high_bit_depth_reduced")
        try:
            with _pillow_warnings():
                decoded, (width, height) = _decode(image, size, reasons)
        except Exception as err:  # any decoder failure on untrusted bytes is a bad file, not a crash
            raise ImageError(name, f"cannot decode {image_format} image data: {err}") from None
        try:
            pixels = _to_float(decoded, channels, reasons)
        except ValueError as err:
            raise ImageError(name, str(err)) from None
    if size is not None:
        processing["native_size"] = (height, width) == (int(size[0]), int(size[1]))
    if size is not None and pixels.shape[1:] != tuple(size):
        pixels = _resize(pixels, (int(size[0]), int(size[1])), resample)
        reasons.append("resized")
        logger.warning(
            "%s: resized from %dx%d to %dx%d (width x height) with the %s filter",
            name,
            width,
            height,
            size[1],
            size[0],
            resample,
        )
    return LoadedImage(
        path=name,
        sha256=hashlib.sha256(data).hexdigest(),
        pixels=pixels,
        width=width,
        height=height,
        format=image_format,
        mode=original_mode,
        reasons=tuple(dict.fromkeys(reasons)),
        processing=processing,
    )


#: The IJG (libjpeg) base tables are scaled by quality q: s = 5000 / q below 50, else 200 - 2q (percent).
_JPEG_QUALITIES = range(1, 101)


@lru_cache(maxsize=1)
def _ijg_luma_tables() -> dict[int, tuple[int, ...]]:
    """The luminance table libjpeg writes at each quality 1..100, read back through Pillow (same order as
    ``image.quantization``, whatever order this Pillow uses): computed once per process (~0.1 s)."""
    tables = {}
    blank = Image.new("L", (8, 8))
    for quality in _JPEG_QUALITIES:
        buffer = io.BytesIO()
        blank.save(buffer, format="JPEG", quality=quality)
        with Image.open(buffer) as encoded:
            tables[quality] = tuple(encoded.quantization[0])
    return tables


def estimate_jpeg_quality(quantization: dict[int, Iterable[int]]) -> tuple[int | None, bool]:
    """(quality 1..100, exact) of a JPEG from its quantisation tables: the IJG quality whose scaled standard
    luminance table is nearest in log ratio (``exact``: equal, as every libjpeg/Pillow encoder writes it).

    Encoders with their own tables (cameras, some apps) get the nearest IJG quality, ``exact`` False.
    ``(None, False)`` when the file has no luminance table."""
    table = quantization.get(0) if quantization else None
    if table is None or len(list(table)) != 64:
        return None, False
    actual = np.log(np.maximum(np.asarray(list(table), dtype=np.float64), 1))
    best, best_error = None, math.inf
    for quality, reference in _ijg_luma_tables().items():
        error = float(np.abs(actual - np.log(np.asarray(reference, dtype=np.float64))).sum())
        if error < best_error:
            best, best_error = quality, error
    return best, best_error == 0


def _webp_kind(data: bytes) -> str | None:
    """'lossy' (a VP8 chunk), 'lossless' (VP8L) or None, from the RIFF chunks of a WebP file."""
    position = 12
    while position + 8 <= len(data):
        tag, length = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "little")
        if tag == b"VP8 ":
            return "lossy"
        if tag == b"VP8L":
            return "lossless"
        position += 8 + length + (length & 1)
    return None


def processing_info(image: Image.Image, data: bytes) -> dict:
    """What an opened file (and its bytes) shows about how it was processed (the ``processing`` field of records).

    ``format``; ``lossy`` (JPEG, lossy WebP); for JPEG ``jpeg_quality`` (IJG quality estimated from the
    quantisation tables, see :func:`estimate_jpeg_quality`) and ``jpeg_quality_exact``; for WebP ``webp``
    ('lossy' / 'lossless'). :func:`load_image` adds ``native_size`` when it has a target size: whether the decoded
    (upright) size is that size, i.e. no resize was needed to reach the model. A resize done before the file was
    saved in a lossless format (downscale then upscale back to the same size, saved as PNG) leaves no trace here.
    """
    image_format = image.format or ""
    info: dict = {"format": image_format, "lossy": False}
    if image_format in _JPEG_FORMATS:
        quality, exact = estimate_jpeg_quality(getattr(image, "quantization", None) or {})
        info.update(lossy=True, jpeg_quality=quality, jpeg_quality_exact=exact)
    elif image_format == "WEBP":
        kind = _webp_kind(data)
        info.update(lossy=kind == "lossy", webp=kind)
    return info


def _check_pixel_count(name: str, image: Image.Image, max_pixels: int) -> None:
    """Refuse, from the header alone, an image with more pixels than allowed (a possible decompression bomb)."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            name,
            f"{width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels}; "
            "refused as a possible decompression bomb",
        )


def _read(name: str, max_bytes: int) -> bytes:
    """The bytes of a regular file, at most max_bytes, read once; ImageError for anything else.

    The path is checked with ``stat`` (so a device is never even opened) and the opened descriptor again with
    ``fstat`` (so a file swapped in between is caught); ``O_NONBLOCK`` keeps the open of a FIFO from blocking.
    """
    try:
        _check_regular(name, os.stat(name))
        descriptor = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise ImageError(name, _open_failure(err)) from None
    try:
        info = os.fstat(descriptor)
        _check_regular(name, info)
        if info.st_size > max_bytes:
            raise ImageError(name, f"file is {info.st_size} bytes, over max_bytes={max_bytes}")
        data = _read_at_most(descriptor, info.st_size, max_bytes)
    except OSError as err:
        raise ImageError(name, f"cannot read file: {err.strerror or err}") from None
    finally:
        os.close(descriptor)
    if len(data) > max_bytes:
        raise ImageError(name, f"file grew past max_bytes={max_bytes} while being read")
    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    return data


def _open_failure(err: OSError) -> str:
    """What a failure to stat or open a path means, in words."""
    if err.errno == errno.ENOENT:
        return "file not found"
    if err.errno == errno.ELOOP:
        return "symbolic link loop"
    if err.errno == errno.ENXIO:
        return "a socket or a device with nothing behind it, not a regular file; refused"
    return f"cannot read file: {err.strerror or err}"


def _check_regular(name: str, info: os.stat_result) -> None:
    """Refuse folders, FIFOs, devices and sockets: only regular files are read."""
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(name, "is a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(name, f"{_kind(info.st_mode)}, not a regular file; refused")


def _read_at_most(descriptor: int, expected: int, max_bytes: int) -> bytes:
    """Read to the end but never more than max_bytes + 1 bytes (which tells a file that grew past the limit)."""
    with os.fdopen(descriptor, "rb", closefd=False) as stream:
        data = stream.read(min(expected, max_bytes) + 1)
        if len(data) > expected:  # the file grew, or reports no size (e.g. /proc): keep reading, still bounded
            data += stream.read(max_bytes + 1 - len(data))
    return data


@contextmanager
def _pillow_warnings() -> Iterator[None]:
    """Make Pillow's decompression-bomb warning an error and silence its UserWarnings about corrupt metadata.

    Those (EXIF, TIFF tags) do not decide whether the file is usable, and one per odd file would bury a run's output.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _open(name: str, data: bytes) -> Image.Image:
    """Open the bytes lazily (header only) as a supported format, turning Pillow's bomb checks into errors."""
    try:
        with _pillow_warnings():
            return Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.UnidentifiedImageError:
        raise ImageError(name, "not a PNG, JPEG, WebP, BMP or TIFF image (unrecognised or corrupt header)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(name, f"refused as a possible decompression bomb: {err}") from None
    except Exception as err:  # plugins raise assorted errors on corrupt headers
        raise ImageError(name, f"cannot open as an image: {err}") from None


def _decode(
    image: Image.Image, size: tuple[int, int] | None, reasons: list[str]
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode the first frame (reduced first when far larger than size) upright; also its full (width, height)."""
    width, height = image.size
    if size is not None and image.format in _JPEG_FORMATS:
        _draft(image, _stored_size(size, image.getexif().get(ExifTags.Base.Orientation)), reasons)
    image.load()
    orientation = image.getexif().get(ExifTags.Base.Orientation)
    if size is not None:
        image = _reduce(image, _stored_size(size, orientation), reasons)
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
        reasons.append("exif_rotated")
    return image, ((height, width) if orientation in _SWAPS_AXES else (width, height))


def _stored_size(size: tuple[int, int], orientation: int | None) -> tuple[int, int]:
    """The target (width, height) in the file's stored orientation, from the upright target (height, width)."""
    height, width = int(size[0]), int(size[1])
    return (height, width) if orientation in _SWAPS_AXES else (width, height)


def _draft(image: Image.Image, target: tuple[int, int], reasons: list[str]) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale when that still leaves twice the target (width, height)."""
    before = image.size
    image.draft(image.mode, (2 * target[0], 2 * target[1]))
    if image.size != before:
        reasons.append("reduced_before_resize")


def _reduce(image: Image.Image, target: tuple[int, int], reasons: list[str]) -> Image.Image:
    """Box-average by integer factors leaving at least twice the target (width, height), for images 4x over it."""
    factors = (max(1, image.width // (2 * target[0])), max(1, image.height // (2 * target[1])))
    reducible = _reducible(image, reasons) if max(factors) >= 2 else None
    if reducible is None:
        return image
    reasons.append("reduced_before_resize")
    return reducible.reduce(factors)


def _reducible(image: Image.Image, reasons: list[str]) -> Image.Image | None:
    """The image in a mode whose box average means what it should (no palette indices, no colour key), or None.

    Conversions are the ones ``_eight_bit`` would make anyway (recorded the same way), or exact (16-bit
    greyscale to 32-bit "I", a colour key to an alpha channel). 32-bit integer and float images give None (not
    reduced), so that their range check sees every original value.
    """
    mode = image.mode
    if mode in _SIXTEEN_BIT_GREY:
        return image.convert("I")
    if mode in ("1", "P", "PA"):
        reasons.append("mode_converted")
        transparent = mode == "PA" or image.has_transparency_data
        return image.convert("L" if mode == "1" else "RGBA" if transparent else "RGB")
    if mode in ("L", "RGB") and image.has_transparency_data:
        return image.convert(_WITH_ALPHA[mode])
    return image if mode in _REDUCIBLE else None


def _colour_samples_over_8_bits(image: Image.Image) -> bool:
    """Whether Pillow will reduce 16-bit PNG/TIFF samples to an 8-bit mode (known only before ``load``)."""
    if image.format not in ("PNG", "TIFF") or image.mode not in _EIGHT_BIT_MODES:
        return False
    for tile in image.tile:
        args = tile.args
        rawmode = args if isinstance(args, str) else args[0] if args else ""
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def _to_float(image: Image.Image, channels: int, reasons: list[str]) -> np.ndarray:
    """Convert a decoded image to float32 [channels, H, W] in [0, 1], recording every change."""
    if image.mode in _HIGH_DEPTH_MODES or image.mode == "F":
        grey = _high_depth_grey(image, reasons)
        if channels == 3:
            reasons.append("mode_converted")
            return np.repeat(grey[None], 3, axis=0)
        return grey[None]
    codes = _eight_bit(image, channels, reasons)
    return np.ascontiguousarray(codes.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)


def _high_depth_grey(image: Image.Image, reasons: list[str]) -> np.ndarray:
    """One-channel 16/32-bit integer or float data as float32 [H, W] in [0, 1]; out of range is an error."""
    values = np.asarray(image)
    if image.mode == "F":
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise ValueError(
                f"float (mode F) pixel values must lie in [0, 1], found min {np.nanmin(values):g}, "
                f"max {np.nanmax(values):g} (non-finite values: {int((~np.isfinite(values)).sum())})"
            )
        return values.astype(np.float32)
    if values.min() < 0 or values.max() > 65535:
        raise ValueError(
            f"integer (mode {image.mode}) pixel values must lie in [0, 65535], "
            f"found min {values.min()}, max {values.max()}"
        )
    reasons.append("high_bit_depth_reduced")
    return (values.astype(np.float64) / 65535).astype(np.float32)


def _eight_bit(image: Image.Image, channels: int, reasons: list[str]) -> np.ndarray:
    """8-bit data as uint8 [H, W, channels]: Pillow mode conversion, alpha onto black, channel count."""
    mode = image.mode
    if mode in _EIGHT_BIT_MODES:
        if image.has_transparency_data and mode != _WITH_ALPHA[mode]:
            image = image.convert(_WITH_ALPHA[mode])  # colour-key transparency becomes an alpha channel
    else:
        target = _CONVERT_TO.get(mode, "RGB")
        if mode == "P" and image.has_transparency_data:
            target = "RGBA"
        try:
            image = image.convert(target)
        except ValueError as err:
            raise ValueError(f"unsupported image mode {mode}: {err}") from None
        reasons.append("mode_converted")
    codes = np.asarray(image)
    codes = codes[:, :, None] if codes.ndim == 2 else codes
    if image.mode in ("LA", "RGBA"):
        colour, alpha = codes[:, :, :-1].astype(np.uint32), codes[:, :, -1:].astype(np.uint32)
        codes = ((colour * alpha + 127) // 255).astype(np.uint8)  # round(c * a / 255); ties cannot occur
        reasons.append("alpha_removed")
    if channels == codes.shape[2]:
        return codes
    reasons.append("mode_converted")
    if channels == 3:
        return np.repeat(codes, 3, axis=2)
    return np.asarray(Image.fromarray(np.ascontiguousarray(codes)).convert("L"))[:, :, None]


def _resize(pixels: np.ndarray, size: tuple[int, int], resample: str) -> np.ndarray:
    """Resize float32 [C, H, W] to (height, width) per channel with Pillow in mode "F", clamped to [0, 1]."""
    height, width = size
    planes = [
        np.asarray(Image.fromarray(plane).resize((width, height), resample=_RESAMPLE[resample])) for plane in pixels
    ]
    return np.clip(np.stack(planes), 0, 1).astype(np.float32)


def load_images(
    paths: Iterable[str | os.PathLike[str]],
    channels: int,
    size: tuple[int, int] | None = None,
    *,
    resample: str = "bicubic",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[list[LoadedImage], list[tuple[str, str]]]:
    """Load many images, collecting bad files as (path, message) errors so a batch never stops on one file.

    Files are decoded one at a time, so the memory a batch holds is that of its results (at ``size`` when given)
    plus one file being decoded. Options are checked once up front: an invalid option is the caller's mistake,
    not a file's, so it raises ValueError instead of producing one error record per file. ImageError is never
    raised.
    """
    _check_options(channels, size, resample, max_pixels, max_bytes)
    loaded: list[LoadedImage] = []
    errors: list[tuple[str, str]] = []
    for path in _paths(paths):
        try:
            image = load_image(path, channels, size, resample=resample, max_pixels=max_pixels, max_bytes=max_bytes)
            loaded.append(image)
        except ImageError as err:
            errors.append((err.path, err.message))
    return loaded, errors


def _codes_8bit(images: torch.Tensor) -> torch.Tensor:
    """The 8-bit code of each value, round(clamp(x, 0, 1) * 255) with round-half-to-even, in x's dtype."""
    if not images.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {images.dtype}")
    return (images.clamp(0, 1) * 255).round()


def uint8_codes(images: torch.Tensor) -> torch.Tensor:
    """The 8-bit codes ``save_png`` writes for values in [0, 1], as a uint8 tensor (the one home of that rounding)."""
    return _codes_8bit(images).byte()


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """Exactly what saving to an 8-bit PNG and loading back does: round(clamp(x, 0, 1) * 255) / 255.

    Rounding is half to even (``torch.round``); the result keeps the input's dtype and device.
    """
    return _codes_8bit(images) / 255


def clipped_fraction(images: torch.Tensor) -> torch.Tensor:
    """Per image ``[N, ...]``, the fraction of values whose 8-bit code is 0 or 255 (clipped by the range): what tells
    a generator that saturates its outputs from photos (about 1.4 % of a held-out photo crop's pixels)."""
    codes = _codes_8bit(images).flatten(1)
    return ((codes == 0) | (codes == 255)).to(images.dtype).mean(1)


def save_png(image: torch.Tensor | np.ndarray, path: str | os.PathLike[str]) -> None:
    """Save [C, H, W] (C = 1 or 3) or [H, W] values in [0, 1] as an 8-bit L or RGB PNG.

    Quantised with the rule of ``quantize_8bit``, so ``load_image`` of the file returns exactly
    ``quantize_8bit`` of a float32 input.
    """
    import torch

    tensor = image.detach().cpu() if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))
    if not (tensor.ndim == 2 or (tensor.ndim == 3 and tensor.shape[0] in (1, 3))):
        raise ValueError(f"expected shape [C, H, W] with C = 1 or 3, or [H, W]; got {list(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError("image contains NaN or infinite values")
    codes = _codes_8bit(tensor).to(torch.uint8).numpy()
    if codes.ndim == 3:
        codes = codes[0] if codes.shape[0] == 1 else codes.transpose(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(codes)).save(path, format="PNG")
