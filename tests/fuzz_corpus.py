"""A seeded corpus of malformed and odd image inputs, to check that every command accounts for every input.

``make_corpus(folder, n=1000, seed=0)`` writes ``n`` entries under ``folder`` (nested sub-folders included) and
returns their paths: valid images of many formats and modes (16-bit, CMYK, palette, animated, EXIF-rotated, a
large one), each also empty, truncated, bit-flipped, with trailing junk or under a wrong extension; PNG and JPEG
headers declaring 100000x100000 pixels in a tiny file; text and random bytes named ``.png``; ``.gif`` and other
extensions; hidden files and a hidden folder; and once each: a FIFO, a symlink to ``/dev/zero``, a symlink loop,
a broken symlink, a symlink to another file of the corpus, a folder link back to its parent, a symlinked folder,
names that are not valid UTF-8, and names with a newline, spaces and non-ASCII letters.

Every returned path is one input a scan must account for: a file loaded or refused (one record or error), or
an entry skipped; a returned folder (a hidden one, a link to a folder) stands for its contents.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

Rng = np.random.Generator
Sample = tuple[str, bytes]  # (suffix, file bytes)

SUBFOLDERS = ("", "", "a", "a/b", "nested", "nested/deeper/deepest")


def _encode(image: Image.Image, format: str, **options: object) -> bytes:
    """An image encoded in memory."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int, bit_depth: int = 8, colour_type: int = 2, rows: int = 1) -> bytes:
    """A valid-looking PNG whose header declares width x height pixels but whose data covers only a few rows."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = b"\x00" * (1 + width * channels * bit_depth // 8)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    data = zlib.compress(row * min(rows, height), 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is rewritten to declare width x height pixels (at most 65535)."""
    data = bytearray(_encode(Image.new("L", (8, 8), 128), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _pixels(rng: Rng, height: int, width: int, channels: int) -> np.ndarray:
    """Random uint8 codes [H, W, C] (C = 1 is returned as [H, W])."""
    codes = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return codes[:, :, 0] if channels == 1 else codes


def _valid_samples(rng: Rng) -> list[Sample]:
    """Valid images of every format and mode the loader meets, small except one large PNG."""
    rgb = Image.fromarray(_pixels(rng, 24, 32, 3))
    grey = Image.fromarray(_pixels(rng, 24, 32, 1))
    rgba = Image.fromarray(_pixels(rng, 24, 32, 4))
    palette = rgb.quantize(16)
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [Image.fromarray(_pixels(rng, 16, 16, 3)) for _ in range(3)]
    sixteen = Image.fromarray(rng.integers(0, 65536, (24, 32), dtype=np.uint16))
    samples = [
        (".png", _encode(rgb, "PNG")),
        (".png", _encode(grey, "PNG")),
        (".png", _encode(rgba, "PNG")),
        (".png", _encode(grey.convert("LA"), "PNG")),
        (".png", _encode(palette, "PNG")),
        (".png", _encode(palette, "PNG", transparency=3)),
        (".png", _encode(grey.convert("1"), "PNG")),
        (".png", _encode(sixteen, "PNG")),
        (".png", png_declaring(32, 24, bit_depth=16, rows=24)),
        (".png", _encode(frames[0], "PNG", save_all=True, append_images=frames[1:])),
        (".png", _encode(rgb, "PNG", exif=exif)),
        (".png", _encode(Image.new("RGB", (2400, 1800), (30, 60, 90)), "PNG", compress_level=1)),
        (".jpg", _encode(rgb, "JPEG", quality=90)),
        (".jpeg", _encode(grey, "JPEG")),
        (".jpg", _encode(rgb.convert("CMYK"), "JPEG")),
        (".jpg", _encode(rgb, "JPEG", progressive=True)),
        (".jpg", _encode(rgb, "JPEG", exif=exif)),
        (".webp", _encode(rgb, "WEBP", quality=80)),
        (".webp", _encode(rgba, "WEBP", lossless=True)),
        (".webp", _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:])),
        (".bmp", _encode(rgb, "BMP")),
        (".tif", _encode(rgb, "TIFF")),
        (".tiff", _encode(rgb.convert("CMYK"), "TIFF", compression="tiff_lzw")),
        (".tif", _encode(sixteen, "TIFF")),
        (".tif", _encode(Image.fromarray(rng.random((8, 8), dtype=np.float32)), "TIFF")),
        (".tif", _encode(Image.fromarray(rng.random((8, 8), dtype=np.float32) * 4 - 1), "TIFF")),  # out of range
        (".tif", _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])),
    ]
    return samples


def _truncated(rng: Rng, sample: Sample) -> Sample:
    """The sample cut at a random byte."""
    suffix, data = sample
    return suffix, data[: int(rng.integers(1, len(data)))]


def _bit_flipped(rng: Rng, sample: Sample) -> Sample:
    """The sample with one to eight random bits flipped (header and data alike)."""
    suffix, data = sample
    flipped = bytearray(data)
    for position in rng.integers(0, len(data), int(rng.integers(1, 9))):
        flipped[position] ^= 1 << int(rng.integers(0, 8))
    return suffix, bytes(flipped)


def _wrong_extension(rng: Rng, sample: Sample) -> Sample:
    """The sample under another image extension."""
    others = [s for s in (".png", ".jpg", ".webp", ".bmp", ".tif") if s != sample[0]]
    return others[int(rng.integers(len(others)))], sample[1]


def _trailing_junk(rng: Rng, sample: Sample) -> Sample:
    """The sample followed by random bytes."""
    return sample[0], sample[1] + rng.bytes(int(rng.integers(1, 512)))


def _empty(rng: Rng, sample: Sample) -> Sample:
    """A zero-byte file with the sample's extension."""
    return sample[0], b""


def _random_bytes(rng: Rng, sample: Sample) -> Sample:
    """Random bytes with the sample's extension."""
    return sample[0], rng.bytes(int(rng.integers(1, 4096)))


def _text(rng: Rng, sample: Sample) -> Sample:
    """A text file with the sample's extension."""
    return sample[0], b"definitely not an image\n"


def _huge_png(rng: Rng, sample: Sample) -> Sample:
    """A tiny PNG declaring 100000 x 100000 pixels."""
    return ".png", png_declaring(100_000, 100_000)


def _huge_jpeg(rng: Rng, sample: Sample) -> Sample:
    """A tiny JPEG declaring 65000 x 65000 pixels."""
    return ".jpg", jpeg_declaring(65_000, 65_000)


def _other_extension(rng: Rng, sample: Sample) -> Sample:
    """A GIF, text or extension-less file, which folder scans skip."""
    choice = int(rng.integers(3))
    if choice == 0:
        return ".gif", _encode(Image.new("P", (4, 4)), "GIF")
    return (".txt", b"notes\n") if choice == 1 else ("", sample[1])


def _valid(rng: Rng, sample: Sample) -> Sample:
    """The sample as it is."""
    return sample


MUTATIONS: tuple[Callable[[Rng, Sample], Sample], ...] = (
    _valid,
    _truncated,
    _bit_flipped,
    _bit_flipped,
    _wrong_extension,
    _trailing_junk,
    _empty,
    _random_bytes,
    _text,
    _huge_png,
    _huge_jpeg,
    _other_extension,
)


def _specials(folder: Path, valid: list[Sample]) -> list[Path]:
    """The entries made once: non-regular files, symlinks, loops, odd names, a hidden folder, a linked folder."""
    (folder / "nested").mkdir(parents=True, exist_ok=True)
    made = []

    def link(name: str, target: str) -> None:
        (folder / name).symlink_to(target)
        made.append(folder / name)

    def write(name: str | bytes, data: bytes) -> None:
        path = os.path.join(os.fsencode(folder), os.fsencode(name))
        with open(path, "wb") as stream:
            stream.write(data)
        made.append(Path(os.fsdecode(path)))

    os.mkfifo(folder / "fifo.png")
    made.append(folder / "fifo.png")
    link("zero.png", "/dev/zero")
    link("loop.png", "loop.png")
    link("broken.png", "missing.png")
    png, jpeg, webp = (next(data for suffix, data in valid if suffix == wanted) for wanted in (".png", ".jpg", ".webp"))
    write("target.png", png)
    link("alias.png", "target.png")
    link("nested/back", "..")
    link("linked", "nested")
    write(b"caf\xe9.png", png)
    write(b"\xff\xfe-truncated.jpg", jpeg[:100])
    write("new\nline.png", png)
    write("ünï cødé.webp", webp)
    write(".hidden.png", png)
    (folder / ".hidden-folder").mkdir()
    (folder / ".hidden-folder" / "x.png").write_bytes(png)
    made.append(folder / ".hidden-folder")
    return made


def make_corpus(folder: Path, n: int = 1000, seed: int = 0) -> list[Path]:
    """Write at least n malformed or odd inputs under folder (see the module docstring); returns their paths."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    valid = _valid_samples(rng)
    made = _specials(folder, valid)
    while len(made) < n:
        index = len(made)
        mutation = MUTATIONS[index % len(MUTATIONS)]
        suffix, data = mutation(rng, valid[int(rng.integers(len(valid)))])
        hidden = "." if index % 97 == 0 else ""
        path = folder / SUBFOLDERS[index % len(SUBFOLDERS)] / f"{hidden}{index:05d}-{mutation.__name__[1:]}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made.append(path)
    return made
