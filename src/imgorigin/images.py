"""Image input shared by every imgorigin command: find, read, validate, decode and normalise user images.

Every file goes through the same explicit pipeline, and every change made to it is recorded in
``LoadedImage.reasons`` so that verification and attribution records say exactly what the model saw:

1. The file's bytes are read once; they are hashed (sha256) and decoded from memory.
2. Pillow opens them (PNG, JPEG, WebP, BMP or TIFF only) and the header size is checked against
   ``max_pixels`` before any pixel is decoded (decompression bombs).
3. The first frame is fully decoded with ``.load()``. Truncated data is always an error, even when some
   other code has set ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``. Multi-frame files (animated PNG/WebP,
   multi-page TIFF) contribute their first frame only; this is not a reason code.
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
the pixels went through lossy compression after the generator produced them.
"""

import hashlib
import io
import logging
import os
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import torch
from PIL import ExifTags, Image, ImageFile, ImageOps

from imgorigin.errors import ImgoriginError

logger = logging.getLogger("imgorigin")

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
DEFAULT_MAX_PIXELS: int = 64 * 1024 * 1024

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
_ORIENTATIONS = frozenset(range(2, 9))


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

    def tensor(self) -> torch.Tensor:
        """The pixels as a float32 [C, H, W] tensor sharing memory with ``pixels``."""
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


def find_images(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into the list of files to load, so every command sees the same inputs.

    Files are kept as given, whatever their extension, so that the loader reports what is wrong with them.
    Folders are walked recursively (symlinked folders are not followed) for files with an extension in
    ``IMAGE_EXTENSIONS`` (case-insensitive), skipping hidden files and folders (name starting with "."),
    sorted by their path relative to the folder. A missing path or an unreadable folder raises ImageError.
    """
    found: list[Path] = []
    for given in _paths(paths):
        path = Path(given)
        if path.is_dir():
            found.extend(_walk(path))
        elif path.exists() or path.is_symlink():
            found.append(path)
        else:
            raise ImageError(given, "no such file or directory")
    return found


def _walk(root: Path) -> list[Path]:
    """Image files under root, recursively, hidden entries skipped, in a deterministic order."""

    def fail(err: OSError) -> None:
        raise ImageError(err.filename or root, f"cannot list folder: {err.strerror or err}")

    found = []
    for folder, subfolders, files in os.walk(root, onerror=fail):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.extend(
            Path(folder, name)
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        )
    return sorted(found, key=lambda path: path.relative_to(root).parts)


def _check_options(channels: int, size: tuple[int, int] | None, resample: str, max_pixels: int) -> None:
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


def load_image(
    path: str | os.PathLike[str],
    channels: int,
    size: tuple[int, int] | None = None,
    *,
    resample: str = "bicubic",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage:
    """Load one image as float32 [channels, H, W] in [0, 1], refusing bad files with ImageError.

    ``channels`` is 1 (Pillow "L" luma) or 3 (RGB); ``size`` is (height, width), or None to keep the
    decoded size; ``resample`` is nearest, box, bilinear, bicubic or lanczos. Images with more than
    ``max_pixels`` pixels (or over Pillow's own ``Image.MAX_IMAGE_PIXELS``) are refused before decoding.
    See the module docstring for the pipeline and the reason codes.
    """
    name = os.fspath(path)
    try:
        _check_options(channels, size, resample, max_pixels)
    except ValueError as err:
        raise ImageError(name, str(err)) from None
    data = _read(name)
    reasons: list[str] = []
    with _strict_truncation, _open(name, data) as image:
        image_format, original_mode = image.format or "", image.mode
        if image_format in _JPEG_FORMATS:
            reasons.append("recompressed_jpeg")
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                name,
                f"{width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels}; "
                "refused as a possible decompression bomb",
            )
        if _colour_samples_over_8_bits(image):
            reasons.append("high_bit_depth_reduced")
        try:
            image.load()
            if image.getexif().get(ExifTags.Base.Orientation) in _ORIENTATIONS:
                image = ImageOps.exif_transpose(image)
                reasons.append("exif_rotated")
        except Exception as err:  # any decoder failure on untrusted bytes is a bad file, not a crash
            raise ImageError(name, f"cannot decode {image_format} image data: {err}") from None
        width, height = image.size
        try:
            pixels = _to_float(image, channels, reasons)
        except ValueError as err:
            raise ImageError(name, str(err)) from None
    if size is not None and tuple(size) != (height, width):
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
    )


def _read(name: str) -> bytes:
    """The file's bytes, read once, or ImageError for missing, unreadable, directory or empty paths."""
    if os.path.isdir(name):
        raise ImageError(name, "is a directory, not an image file")
    try:
        data = Path(name).read_bytes()
    except FileNotFoundError:
        raise ImageError(name, "file not found") from None
    except OSError as err:
        raise ImageError(name, f"cannot read file: {err.strerror or err}") from None
    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    return data


def _open(name: str, data: bytes) -> Image.Image:
    """Open the bytes lazily (header only) as a supported format, turning Pillow's bomb checks into errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.UnidentifiedImageError:
        raise ImageError(name, "not a PNG, JPEG, WebP, BMP or TIFF image (unrecognised or corrupt header)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(name, f"refused as a possible decompression bomb: {err}") from None
    except Exception as err:  # plugins raise assorted errors on corrupt headers
        raise ImageError(name, f"cannot open as an image: {err}") from None


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
) -> tuple[list[LoadedImage], list[tuple[str, str]]]:
    """Load many images, collecting bad files as (path, message) errors so a batch never stops on one file.

    Options are checked once up front: an invalid option is the caller's mistake, not a file's, so it raises
    ValueError instead of producing one error record per file. ImageError is never raised.
    """
    _check_options(channels, size, resample, max_pixels)
    loaded: list[LoadedImage] = []
    errors: list[tuple[str, str]] = []
    for path in _paths(paths):
        try:
            loaded.append(load_image(path, channels, size, resample=resample, max_pixels=max_pixels))
        except ImageError as err:
            errors.append((err.path, err.message))
    return loaded, errors


def _codes_8bit(images: torch.Tensor) -> torch.Tensor:
    """The 8-bit code of each value, round(clamp(x, 0, 1) * 255) with round-half-to-even, in x's dtype."""
    if not images.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {images.dtype}")
    return torch.round(images.clamp(0, 1) * 255)


def quantize_8bit(images: torch.Tensor) -> torch.Tensor:
    """Exactly what saving to an 8-bit PNG and loading back does: round(clamp(x, 0, 1) * 255) / 255.

    Rounding is half to even (``torch.round``); the result keeps the input's dtype and device.
    """
    return _codes_8bit(images) / 255


def save_png(image: torch.Tensor | np.ndarray, path: str | os.PathLike[str]) -> None:
    """Save [C, H, W] (C = 1 or 3) or [H, W] values in [0, 1] as an 8-bit L or RGB PNG.

    Quantised with the rule of ``quantize_8bit``, so ``load_image`` of the file returns exactly
    ``quantize_8bit`` of a float32 input.
    """
    tensor = image.detach().cpu() if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))
    if not (tensor.ndim == 2 or (tensor.ndim == 3 and tensor.shape[0] in (1, 3))):
        raise ValueError(f"expected shape [C, H, W] with C = 1 or 3, or [H, W]; got {list(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError("image contains NaN or infinite values")
    codes = _codes_8bit(tensor).to(torch.uint8).numpy()
    if codes.ndim == 3:
        codes = codes[0] if codes.shape[0] == 1 else codes.transpose(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(codes)).save(path, format="PNG")
