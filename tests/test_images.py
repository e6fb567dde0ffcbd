"""imgorigin.images: formats, modes, EXIF, resizing, refusals, discovery and the 8-bit round trip."""

import hashlib
import json
import logging
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import imgorigin.images as images_module
from imgorigin.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    SKIP_REASONS,
    ImageError,
    LoadedImage,
    find_images,
    load_image,
    load_images,
    quantize_8bit,
    save_png,
    scan_inputs,
)
from imgorigin.records import RecordWriter, read_records

RGB = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
# Pillow "L" of RGB: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, i.e. ITU-R 601-2 luma rounded.
RGB_LUMA = np.array([[76, 150], [29, 18]], dtype=np.uint8)


def save(tmp_path: Path, name: str, image: Image.Image, **kw: object) -> Path:
    """Save image under tmp_path and return the path."""
    path = tmp_path / name
    image.save(path, **kw)
    return path


def as_float(codes: np.ndarray) -> np.ndarray:
    """uint8 [H, W] or [H, W, C] codes as the loader's float32 [C, H, W]."""
    codes = codes[:, :, None] if codes.ndim == 2 else codes
    return codes.transpose(2, 0, 1).astype(np.float32) / np.float32(255)


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Deterministic random RGB codes, incompressible enough that cutting a file in half hits pixel data."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_16bit_rgb(codes: np.ndarray) -> bytes:
    """A 16-bit-per-sample RGB PNG, which Pillow cannot write itself."""
    height, width, _ = codes.shape
    raw = b"".join(b"\x00" + codes[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    body = png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


# Formats


@pytest.mark.parametrize(
    ("name", "kw", "fmt"),
    [
        ("a.png", {}, "PNG"),
        ("a.bmp", {}, "BMP"),
        ("a.tif", {}, "TIFF"),
        ("a.tiff", {"compression": "tiff_lzw"}, "TIFF"),
        ("a.webp", {"lossless": True}, "WEBP"),
    ],
)
def test_lossless_formats_round_trip_exactly(tmp_path: Path, name: str, kw: dict, fmt: str) -> None:
    path = save(tmp_path, name, Image.fromarray(RGB), **kw)
    loaded = load_image(path, 3)
    assert loaded.format == fmt and loaded.mode == "RGB"
    assert loaded.pixels.dtype == np.float32 and loaded.pixels.shape == (3, 2, 2)
    np.testing.assert_array_equal(loaded.pixels, as_float(RGB))
    assert loaded.reasons == ()
    assert (loaded.width, loaded.height) == (2, 2)


def test_jpeg_is_loaded_and_flagged_lossy(tmp_path: Path) -> None:
    codes = np.full((16, 16, 3), (200, 100, 50), dtype=np.uint8)
    path = save(tmp_path, "a.jpg", Image.fromarray(codes), quality=95)
    loaded = load_image(path, 3)
    assert loaded.format == "JPEG" and loaded.reasons == ("recompressed_jpeg",)
    np.testing.assert_allclose(loaded.pixels, as_float(codes), atol=3 / 255)


def test_result_fields_hash_and_tensor(tmp_path: Path) -> None:
    path = save(tmp_path, "a.png", Image.fromarray(RGB))
    loaded = load_image(str(path), 3)
    assert isinstance(loaded, LoadedImage)
    assert loaded.path == str(path)
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    tensor = loaded.tensor()
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 2, 2)
    assert torch.equal(tensor, torch.from_numpy(as_float(RGB)))


def test_first_frame_of_animated_png(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (2, 2), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    path = save(tmp_path, "anim.png", frames[0], save_all=True, append_images=frames[1:])
    with Image.open(path) as check:
        assert check.n_frames == 2
    loaded = load_image(path, 3)
    np.testing.assert_array_equal(loaded.pixels[:, 0, 0], [1, 0, 0])


# Modes


def test_l_to_one_and_three_channels(tmp_path: Path) -> None:
    codes = np.array([[0, 255], [128, 7]], dtype=np.uint8)
    path = save(tmp_path, "l.png", Image.fromarray(codes))
    one = load_image(path, 1)
    assert one.mode == "L" and one.reasons == ()
    np.testing.assert_array_equal(one.pixels, as_float(codes))
    three = load_image(path, 3)
    assert three.reasons == ("mode_converted",)
    np.testing.assert_array_equal(three.pixels, np.repeat(as_float(codes), 3, axis=0))


def test_rgb_to_one_channel_is_pillow_luma(tmp_path: Path) -> None:
    path = save(tmp_path, "rgb.png", Image.fromarray(RGB))
    loaded = load_image(path, 1)
    assert loaded.reasons == ("mode_converted",)
    np.testing.assert_array_equal(loaded.pixels, as_float(RGB_LUMA))
    np.testing.assert_array_equal(RGB_LUMA, np.asarray(Image.fromarray(RGB).convert("L")))


def test_rgba_composited_onto_black(tmp_path: Path) -> None:
    rgba = np.array(
        [[[200, 100, 50, 255], [200, 100, 50, 0]], [[255, 255, 255, 128], [100, 10, 0, 51]]], dtype=np.uint8
    )
    path = save(tmp_path, "rgba.png", Image.fromarray(rgba))
    loaded = load_image(path, 3)
    assert loaded.mode == "RGBA" and loaded.reasons == ("alpha_removed",)
    expected = np.array([[[200, 100, 50], [0, 0, 0]], [[128, 128, 128], [20, 2, 0]]], dtype=np.uint8)
    np.testing.assert_array_equal(loaded.pixels, as_float(expected))
    grey = load_image(path, 1)
    assert grey.reasons == ("alpha_removed", "mode_converted")
    np.testing.assert_array_equal(grey.pixels, as_float(np.asarray(Image.fromarray(expected).convert("L"))))


def test_opaque_alpha_is_still_recorded(tmp_path: Path) -> None:
    path = save(tmp_path, "opaque.png", Image.new("RGBA", (2, 2), (10, 20, 30, 255)))
    loaded = load_image(path, 3)
    assert loaded.reasons == ("alpha_removed",)
    np.testing.assert_array_equal(loaded.pixels[:, 0, 0], np.array([10, 20, 30], np.float32) / 255)


def test_la_to_one_and_three_channels(tmp_path: Path) -> None:
    la = np.array([[[200, 255], [200, 0], [255, 128]]], dtype=np.uint8)
    path = save(tmp_path, "la.png", Image.frombytes("LA", (3, 1), la.tobytes()))
    one = load_image(path, 1)
    assert one.mode == "LA" and one.reasons == ("alpha_removed",)
    np.testing.assert_array_equal(one.pixels, as_float(np.array([[200, 0, 128]], np.uint8)))
    three = load_image(path, 3)
    assert three.reasons == ("alpha_removed", "mode_converted")
    np.testing.assert_array_equal(three.pixels, np.repeat(one.pixels, 3, axis=0))


def palette_image() -> Image.Image:
    """A 2x1 palette image: index 0 red, index 1 blue."""
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.putdata([0, 1])
    return image


def test_palette_maps_to_palette_colours(tmp_path: Path) -> None:
    path = save(tmp_path, "p.png", palette_image())
    three = load_image(path, 3)
    assert three.mode == "P" and three.reasons == ("mode_converted",)
    np.testing.assert_array_equal(three.pixels[:, 0], [[1, 0], [0, 0], [0, 1]])
    one = load_image(path, 1)
    assert one.reasons == ("mode_converted",)
    np.testing.assert_array_equal(one.pixels, np.array([[[76, 29]]], np.float32) / 255)


def test_palette_transparency_becomes_black(tmp_path: Path) -> None:
    path = save(tmp_path, "pt.png", palette_image(), transparency=1)
    loaded = load_image(path, 3)
    assert loaded.reasons == ("mode_converted", "alpha_removed")
    np.testing.assert_array_equal(loaded.pixels[:, 0], [[1, 0], [0, 0], [0, 0]])


def test_colour_key_transparency_becomes_black(tmp_path: Path) -> None:
    image = Image.new("RGB", (2, 1), (9, 9, 9))
    image.putpixel((0, 0), (1, 2, 3))
    path = save(tmp_path, "key.png", image, transparency=(1, 2, 3))
    loaded = load_image(path, 3)
    assert loaded.mode == "RGB" and loaded.reasons == ("alpha_removed",)
    np.testing.assert_array_equal(loaded.pixels[:, 0], np.array([[0, 9]] * 3, np.float32) / 255)


def test_bilevel(tmp_path: Path) -> None:
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).convert("1")
    path = save(tmp_path, "bits.png", bits)
    one = load_image(path, 1)
    assert one.mode == "1" and one.reasons == ("mode_converted",)
    np.testing.assert_array_equal(one.pixels, [[[0, 1], [1, 0]]])
    three = load_image(path, 3)
    assert three.reasons == ("mode_converted",)
    np.testing.assert_array_equal(three.pixels, np.repeat(one.pixels, 3, axis=0))


SIXTEEN_BIT = np.array([[0, 65535], [32768, 1]], dtype=np.uint16)
SIXTEEN_BIT_FLOAT = (SIXTEEN_BIT.astype(np.float64) / 65535).astype(np.float32)[None]


@pytest.mark.parametrize(
    ("name", "array", "mode"),
    [
        ("g16.png", SIXTEEN_BIT, "I;16"),
        ("g16.tif", SIXTEEN_BIT, "I;16"),
        ("g16b.tif", SIXTEEN_BIT.astype(">u2"), "I;16B"),
        ("g32.tif", SIXTEEN_BIT.astype(np.int32), "I"),
    ],
)
def test_high_bit_depth_greyscale(tmp_path: Path, name: str, array: np.ndarray, mode: str) -> None:
    path = save(tmp_path, name, Image.fromarray(array))
    one = load_image(path, 1)
    assert one.mode == mode and one.reasons == ("high_bit_depth_reduced",)
    np.testing.assert_array_equal(one.pixels, SIXTEEN_BIT_FLOAT)
    assert one.pixels[0, 0, 1] == 1.0 and one.pixels[0, 1, 0] == np.float32(32768 / 65535)
    three = load_image(path, 3)
    assert three.reasons == ("high_bit_depth_reduced", "mode_converted")
    np.testing.assert_array_equal(three.pixels, np.repeat(SIXTEEN_BIT_FLOAT, 3, axis=0))


def test_sixteen_bit_colour_png_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_16bit_rgb(np.array([[[65535, 0, 256], [1, 2, 3]]], dtype=np.uint16)))
    loaded = load_image(path, 3)
    assert loaded.mode == "RGB" and loaded.reasons == ("high_bit_depth_reduced",)
    np.testing.assert_array_equal(loaded.pixels[:, 0], np.array([[255, 0], [0, 0], [1, 0]], np.float32) / 255)


@pytest.mark.parametrize("value", [70000, -1])
def test_integer_mode_out_of_range_refused(tmp_path: Path, value: int) -> None:
    path = save(tmp_path, "big.tif", Image.fromarray(np.array([[0, value]], dtype=np.int32)))
    with pytest.raises(ImageError, match=r"big\.tif: .*\[0, 65535\]"):
        load_image(path, 1)


def test_float_mode_in_range(tmp_path: Path) -> None:
    values = np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32)
    path = save(tmp_path, "f.tif", Image.fromarray(values))
    one = load_image(path, 1)
    assert one.mode == "F" and one.reasons == ()
    np.testing.assert_array_equal(one.pixels, values[None])
    three = load_image(path, 3)
    assert three.reasons == ("mode_converted",)
    np.testing.assert_array_equal(three.pixels, np.repeat(values[None], 3, axis=0))


@pytest.mark.parametrize("bad", [1.5, -0.1, np.nan])
def test_float_mode_out_of_range_refused(tmp_path: Path, bad: float) -> None:
    path = save(tmp_path, "f.tif", Image.fromarray(np.array([[0.0, bad]], dtype=np.float32)))
    with pytest.raises(ImageError, match=r"f\.tif: float \(mode F\) pixel values must lie in \[0, 1\]"):
        load_image(path, 1)


@pytest.mark.parametrize(
    ("cmyk", "rgb"),
    [((0, 0, 0, 0), (255, 255, 255)), ((0, 0, 0, 255), (0, 0, 0)), ((255, 0, 0, 0), (0, 255, 255))],
)
def test_cmyk_uses_pillow_conversion(tmp_path: Path, cmyk: tuple, rgb: tuple) -> None:
    path = save(tmp_path, "cmyk.tif", Image.new("CMYK", (2, 2), cmyk))
    loaded = load_image(path, 3)
    assert loaded.mode == "CMYK" and loaded.reasons == ("mode_converted",)
    np.testing.assert_array_equal(loaded.pixels[:, 0, 0], np.array(rgb, np.float32) / 255)


@pytest.mark.parametrize(("mode", "colour"), [("YCbCr", (120, 90, 200)), ("LAB", (150, 100, 160))])
def test_other_modes_use_pillow_conversion(tmp_path: Path, mode: str, colour: tuple) -> None:
    image = Image.new(mode, (2, 2), colour)
    path = save(tmp_path, "other.tif", image)
    expected = np.asarray(image.convert("RGB"))
    three = load_image(path, 3)
    assert three.mode == mode and three.reasons == ("mode_converted",)
    np.testing.assert_array_equal(three.pixels, as_float(expected))
    one = load_image(path, 1)
    np.testing.assert_array_equal(one.pixels, as_float(np.asarray(Image.fromarray(expected).convert("L"))))


# EXIF orientation


def exif_orientation(value: int) -> Image.Exif:
    """EXIF data holding only an orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def test_exif_orientation_jpeg(tmp_path: Path) -> None:
    path = save(tmp_path, "rot.jpg", Image.new("RGB", (4, 2), (90, 90, 90)), exif=exif_orientation(6))
    loaded = load_image(path, 3)
    assert (loaded.width, loaded.height) == (2, 4)
    assert loaded.pixels.shape == (3, 4, 2)
    assert loaded.reasons == ("recompressed_jpeg", "exif_rotated")


def test_exif_orientation_png_pixels(tmp_path: Path) -> None:
    codes = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    path = save(tmp_path, "rot.png", Image.fromarray(codes), exif=exif_orientation(6))
    loaded = load_image(path, 1)
    assert loaded.reasons == ("exif_rotated",)
    np.testing.assert_array_equal(loaded.pixels, as_float(np.rot90(codes, k=-1)))  # 6: rotate 90 clockwise


def test_exif_orientation_one_is_not_a_change(tmp_path: Path) -> None:
    path = save(tmp_path, "up.png", Image.new("L", (4, 2)), exif=exif_orientation(1))
    loaded = load_image(path, 1)
    assert (loaded.width, loaded.height) == (4, 2) and loaded.reasons == ()


# Resizing


def test_resize_records_reason_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = save(tmp_path, "big.png", Image.new("RGB", (8, 6), (255, 0, 51)))
    with caplog.at_level(logging.WARNING, logger="imgorigin"):
        loaded = load_image(path, 3, size=(3, 4))
    assert loaded.pixels.shape == (3, 3, 4)
    assert (loaded.width, loaded.height) == (8, 6)
    assert loaded.reasons == ("resized",)
    np.testing.assert_allclose(loaded.pixels[:, 1, 1], [1, 0, 0.2], atol=1e-6)
    records = [r for r in caplog.records if r.name == "imgorigin"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert "big.png" in message and "8x6" in message and "4x3" in message and "bicubic" in message


def test_resize_nearest_is_exact_and_filters_are_clamped(tmp_path: Path) -> None:
    codes = np.array([[0, 255], [255, 0]], dtype=np.uint8)
    path = save(tmp_path, "check.png", Image.fromarray(codes))
    nearest = load_image(path, 1, size=(4, 4), resample="nearest")
    np.testing.assert_array_equal(nearest.pixels[0], np.kron(codes / 255, np.ones((2, 2))))
    for resample in ("bicubic", "lanczos", "bilinear", "box"):
        pixels = load_image(path, 1, size=(5, 7), resample=resample).pixels
        assert pixels.dtype == np.float32 and pixels.shape == (1, 5, 7)
        assert pixels.min() >= 0 and pixels.max() <= 1


def test_same_size_is_not_resized(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = save(tmp_path, "same.png", Image.fromarray(RGB))
    with caplog.at_level(logging.WARNING, logger="imgorigin"):
        loaded = load_image(path, 3, size=(2, 2))
    assert loaded.reasons == () and not caplog.records


# Refusals


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.png"
    with pytest.raises(ImageError, match=r"^.*missing\.png: file not found") as info:
        load_image(path, 3)
    assert info.value.path == str(path)
    assert str(info.value).startswith(str(path))


def test_directory_given_as_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(ImageError, match=r"folder\.png: is a directory"):
        load_image(folder, 3)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png: empty file"):
        load_image(path, 3)


def test_text_file_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("definitely not an image\n")
    with pytest.raises(ImageError, match=r"notes\.png: not a PNG, JPEG, WebP, BMP or TIFF image"):
        load_image(path, 3)


def test_unsupported_format(tmp_path: Path) -> None:
    path = save(tmp_path, "anim.gif", Image.new("P", (2, 2)))
    with pytest.raises(ImageError, match=r"anim\.gif: not a PNG"):
        load_image(path, 3)


@pytest.mark.parametrize(("name", "kw"), [("cut.png", {}), ("cut.jpg", {"quality": 90})])
@pytest.mark.parametrize("pillow_flag", [False, True])
def test_truncated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, kw: dict, pillow_flag: bool
) -> None:
    whole = save(tmp_path, "whole" + Path(name).suffix, Image.fromarray(noise(64, 64)), **kw)
    path = tmp_path / name
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", pillow_flag)
    with pytest.raises(ImageError, match=re.escape(name)):
        load_image(path, 3)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is pillow_flag  # restored, not left changed


def test_truncation_guard_is_thread_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = save(tmp_path, "whole.png", Image.fromarray(noise(32, 32)))
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:300])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda path: load_images([path], 3), [whole, cut] * 20))
    assert all(len(loaded) == 1 for loaded, _ in results[::2])
    assert all(len(errors) == 1 for _, errors in results[1::2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_decompression_bomb_checked_from_header(tmp_path: Path) -> None:
    path = save(tmp_path, "bomb.png", Image.new("L", (40, 30)))
    with pytest.raises(ImageError, match=r"bomb\.png: 40x30 = 1200 pixels exceeds max_pixels=1000"):
        load_image(path, 1, max_pixels=1000)
    assert load_image(path, 1, max_pixels=1200).pixels.shape == (1, 30, 40)
    assert DEFAULT_MAX_PIXELS >= 4096 * 4096


@pytest.mark.parametrize("pillow_limit", [1000, 500])  # over the limit: warning; over twice the limit: error
def test_pillow_bomb_checks_become_image_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pillow_limit: int
) -> None:
    path = save(tmp_path, "bomb.png", Image.new("L", (40, 30)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    with pytest.raises(ImageError, match=r"bomb\.png: refused as a possible decompression bomb"):
        load_image(path, 1)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"channels": 3, "size": (0, 4)}, "size must be"),
        ({"channels": 3, "size": (4,)}, "size must be"),
        ({"channels": 3, "resample": "cubic"}, "resample must be one of"),
        ({"channels": 3, "max_pixels": 0}, "max_pixels must be"),
        ({"channels": 3, "max_bytes": 0}, "max_bytes must be"),
    ],
)
def test_bad_options(tmp_path: Path, options: dict, problem: str) -> None:
    path = save(tmp_path, "ok.png", Image.fromarray(RGB))
    with pytest.raises(ImageError, match=rf"ok\.png: {problem}"):
        load_image(path, **options)
    with pytest.raises(ValueError, match=problem) as info:
        load_images([path], **options)
    assert not isinstance(info.value, ImageError)


def test_image_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(ImageError("a/b.png", "empty file (0 bytes)")))
    assert (err.path, err.message) == ("a/b.png", "empty file (0 bytes)")
    assert str(err) == "a/b.png: empty file (0 bytes)"


# Batches and discovery


def test_load_images_collects_errors_and_continues(tmp_path: Path) -> None:
    good = save(tmp_path, "good.png", Image.fromarray(RGB))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    other = save(tmp_path, "other.bmp", Image.fromarray(RGB))
    missing = tmp_path / "missing.jpg"
    loaded, errors = load_images([good, empty, other, missing], 3, size=(2, 2))
    assert [image.path for image in loaded] == [str(good), str(other)]
    assert errors == [(str(empty), "empty file (0 bytes)"), (str(missing), "file not found")]


def test_find_images(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for relative in [
        "b.png",
        "a.JPG",
        "sub/c.webp",
        "sub/deeper/d.TIFF",
        "a2/e.jpeg",
        "notes.txt",
        ".hidden.png",
        ".cache/f.png",
        "sub/g.bmp",
        "sub/h.tif",
    ]:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"x")
    odd = tmp_path / "odd.txt"
    odd.write_text("kept as given")
    found = find_images([odd, str(root)])
    expected = ["a.JPG", "a2/e.jpeg", "b.png", "sub/c.webp", "sub/deeper/d.TIFF", "sub/g.bmp", "sub/h.tif"]
    assert found == [odd] + [root / relative for relative in expected]
    assert find_images(root / "b.png") == [root / "b.png"]
    assert ".png" in IMAGE_EXTENSIONS and ".JPG" not in IMAGE_EXTENSIONS
    with pytest.raises(ImageError, match=r"nowhere: no such file or directory"):
        find_images([root, tmp_path / "nowhere"])


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail with TimeoutError instead of hanging when the block takes longer than seconds (SIGALRM)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# Only regular files are read, and only so much of them


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    with deadline(1), pytest.raises(ImageError, match=r"x\.png: a FIFO \(named pipe\), not a regular file; refused"):
        load_image(fifo, 3)
    with deadline(1):
        assert load_images([fifo], 3) == ([], [(str(fifo), "a FIFO (named pipe), not a regular file; refused")])
        assert scan_inputs([tmp_path]) == (
            [],
            [{"path": str(fifo), "skipped": "not_regular_file", "detail": "a FIFO (named pipe)"}],
        )


def test_symlink_to_a_device_is_refused_unread(tmp_path: Path) -> None:
    zero = tmp_path / "zero.png"
    zero.symlink_to("/dev/zero")
    with deadline(1), pytest.raises(ImageError, match=r"zero\.png: a character device, not a regular file"):
        load_image(zero, 3)
    with deadline(1):
        assert scan_inputs([tmp_path])[1] == [
            {"path": str(zero), "skipped": "not_regular_file", "detail": "a character device"}
        ]


def test_symlink_loop_is_an_error(tmp_path: Path) -> None:
    loop = tmp_path / "loop.png"
    loop.symlink_to("loop.png")
    with pytest.raises(ImageError, match=r"loop\.png: symbolic link loop"):
        load_image(loop, 3)


def test_file_over_max_bytes_is_refused(tmp_path: Path) -> None:
    path = save(tmp_path, "big.png", Image.fromarray(noise(16, 16)))
    size = path.stat().st_size
    with pytest.raises(ImageError, match=rf"big\.png: file is {size} bytes, over max_bytes={size - 1}"):
        load_image(path, 3, max_bytes=size - 1)
    assert load_image(path, 3, max_bytes=size).pixels.shape == (3, 16, 16)
    assert DEFAULT_MAX_BYTES == 256 * 1024 * 1024


def test_name_that_is_not_utf8(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/caf\xe9.png"
    with open(raw, "wb") as stream:
        Image.fromarray(RGB).save(stream, format="PNG")
    (found,), skipped = scan_inputs([tmp_path])
    assert skipped == [] and os.fsencode(found) == raw
    loaded = load_image(found, 3)
    assert os.fsencode(loaded.path) == raw and loaded.path.endswith("caf\udce9.png")
    np.testing.assert_array_equal(loaded.pixels, as_float(RGB))
    out = tmp_path / "records.jsonl"
    with RecordWriter(out, {"model": "m"}) as writer:
        writer.write({"path": loaded.path, "sha256": loaded.sha256})
        writer.write({"path": loaded.path + "x", "error": f"{loaded.path}x: file not found"})
    text = out.read_bytes().decode("utf-8")  # a valid UTF-8 file, the odd byte as a JSON escape
    assert "caf\\udce9.png" in text
    assert [os.fsencode(record["path"]) for record in read_records(out)] == [raw, raw + b"x"]
    with RecordWriter(out, {"model": "m"}) as resumed:
        assert resumed.done == {loaded.path}


# Large images are reduced before they are converted to float


def smooth(height: int, width: int) -> np.ndarray:
    """Deterministic smooth RGB codes (gradients and a slow wave), so reduced and exact resizes agree closely."""
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    planes = [x, y, 0.5 + 0.5 * np.sin(6 * x + 4 * y)]
    return np.round(np.stack(planes, axis=-1) * 255).astype(np.uint8)


def resized_exactly(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    """The full-resolution path: decode everything, then resize in float (what the loader does below 4x)."""
    full = load_image(path, channels).pixels
    planes = [np.asarray(Image.fromarray(p).resize((size[1], size[0]), Image.Resampling.BICUBIC)) for p in full]
    return np.clip(np.stack(planes), 0, 1)


@pytest.mark.parametrize(
    ("name", "image", "channels", "expected", "atol"),
    [
        ("rgb.png", Image.fromarray(smooth(320, 400)), 3, ("reduced_before_resize", "resized"), 0.01),
        (
            "luma.png",
            Image.fromarray(smooth(320, 400)),
            1,
            ("reduced_before_resize", "mode_converted", "resized"),
            0.01,
        ),
        (
            "p.png",
            Image.fromarray(smooth(320, 400)).quantize(64),
            3,
            ("mode_converted", "reduced_before_resize", "resized"),
            0.03,
        ),
        (
            "g16.png",
            Image.fromarray(smooth(320, 400)[:, :, 0].astype(np.uint16) * 257),
            1,
            ("reduced_before_resize", "high_bit_depth_reduced", "resized"),
            0.01,
        ),
        (
            "rgba.png",
            Image.fromarray(np.dstack([smooth(320, 400), smooth(320, 400)[:, :, 2]])),
            3,
            ("reduced_before_resize", "alpha_removed", "resized"),
            0.01,
        ),
        (
            "photo.jpg",
            Image.fromarray(smooth(320, 400)),
            3,
            ("recompressed_jpeg", "reduced_before_resize", "resized"),
            0.03,
        ),
    ],
)
def test_large_image_is_reduced_before_resize(
    tmp_path: Path, name: str, image: Image.Image, channels: int, expected: tuple, atol: float
) -> None:
    path = save(tmp_path, name, image)
    loaded = load_image(path, channels, size=(20, 25))
    assert loaded.reasons == expected
    assert (loaded.width, loaded.height) == (400, 320) and loaded.pixels.shape == (channels, 20, 25)
    np.testing.assert_allclose(loaded.pixels, resized_exactly(path, channels, (20, 25)), atol=atol)


@pytest.mark.parametrize(("width", "reduced"), [(79, False), (80, True)])
def test_under_four_times_the_target_is_exact(tmp_path: Path, width: int, reduced: bool) -> None:
    path = save(tmp_path, "edge.png", Image.fromarray(smooth(20, width)))
    loaded = load_image(path, 3, size=(10, 20))
    assert loaded.reasons == (("reduced_before_resize", "resized") if reduced else ("resized",))
    if not reduced:
        np.testing.assert_array_equal(loaded.pixels, resized_exactly(path, 3, (10, 20)))


@pytest.mark.parametrize("name", ["rot.png", "rot.jpg"])
def test_reduction_respects_exif_orientation(tmp_path: Path, name: str) -> None:
    codes = np.zeros((200, 400), np.uint8)
    codes[:, 200:] = 255  # stored: left half black, right half white
    path = save(tmp_path, name, Image.fromarray(codes), exif=exif_orientation(6))  # upright: 90 degrees clockwise
    loaded = load_image(path, 1, size=(40, 20))
    assert {"exif_rotated", "reduced_before_resize", "resized"} <= set(loaded.reasons)
    assert (loaded.width, loaded.height) == (200, 400) and loaded.pixels.shape == (1, 40, 20)
    assert loaded.pixels[0, :15].max() < 0.05 and loaded.pixels[0, 25:].min() > 0.95  # black on top, white below


MEMORY_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from imgorigin.images import load_images
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loaded, errors = load_images([sys.argv[1]], 3, (28, 28))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pixel = loaded[0].pixels[:, 14, 14].tolist()
    result = {"extra_mb": (after - before) / 1024, "reasons": loaded[0].reasons, "errors": errors, "pixel": pixel}
    print(json.dumps(result))
    """
)


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A large one-colour RGB PNG, compressed row by row so that making it costs little time and memory."""
    row = b"\x00" + bytes(rgb) * width
    squeeze = zlib.compressobj(1)
    data = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def test_huge_png_at_a_small_size_stays_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(solid_png(7000, 7000, (90, 120, 200)))
    run = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(path)], capture_output=True, text=True, timeout=60)
    result = json.loads(run.stdout)
    assert result["errors"] == [] and "reduced_before_resize" in result["reasons"]
    assert result["pixel"] == pytest.approx([90 / 255, 120 / 255, 200 / 255], abs=1e-6)
    assert result["extra_mb"] < 250  # the 8-bit decode (147 MB) and little else; a float32 decode alone is 588 MB


# Scanning inputs: every file is loaded or accounted for


def make_tree(root: Path) -> None:
    """A folder with one of everything the scanner must keep or account for."""
    (root / "sub").mkdir(parents=True)
    (root / "elsewhere").mkdir()
    save(root, "a.png", Image.fromarray(RGB))
    save(root / "elsewhere", "o.png", Image.fromarray(RGB))
    save(root / "sub", "c.JPG", Image.fromarray(RGB))
    (root / "anim.gif").write_bytes(b"GIF89a")
    (root / "notes.txt").write_text("x")
    (root / ".hidden.png").write_bytes(b"x")
    (root / ".cache").mkdir()
    (root / ".cache" / "f.png").write_bytes(b"x")
    os.mkfifo(root / "fifo.png")
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "loop.png").symlink_to("loop.png")
    (root / "broken.png").symlink_to("missing.png")
    (root / "alias.png").symlink_to("a.png")
    os.link(root / "a.png", root / "hard.png")
    (root / "sub" / "up").symlink_to("..")
    (root / "link").symlink_to("elsewhere")


def test_scan_inputs_accounts_for_every_file(tmp_path: Path) -> None:
    root = tmp_path / "d"
    make_tree(root)
    images, skipped = scan_inputs([root])
    assert images == [root / "a.png", root / "elsewhere" / "o.png", root / "sub" / "c.JPG"]
    got = {Path(entry["path"]).relative_to(root).as_posix(): entry["skipped"] for entry in skipped}
    assert got == {
        ".cache": "hidden",
        ".hidden.png": "hidden",
        "alias.png": "duplicate",
        "anim.gif": "unsupported_extension",
        "broken.png": "broken_symlink",
        "fifo.png": "not_regular_file",
        "hard.png": "duplicate",
        "link": "duplicate",
        "loop.png": "symlink_loop",
        "notes.txt": "unsupported_extension",
        "sub/up": "symlink_loop",
        "zero.png": "not_regular_file",
    }
    assert len(skipped) == len(got) and set(got.values()) <= set(SKIP_REASONS)
    assert all(set(entry) == {"path", "skipped", "detail"} and entry["detail"] for entry in skipped)
    by_path = {Path(entry["path"]).name: entry["detail"] for entry in skipped}
    assert (
        by_path["alias.png"] == f"same file as {root / 'a.png'}"
        and by_path["link"] == f"same folder as {root / 'elsewhere'}"
    )
    assert by_path["up"] == f"link to {root}, a folder it is inside"
    assert find_images([root]) == images


def test_scan_inputs_merges_spellings_of_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    save(tmp_path, "a.png", Image.fromarray(RGB))
    absolute = str(tmp_path / "a.png")
    assert scan_inputs(["a.png", "a.png", absolute, "."]) == (
        [Path("a.png")],
        [{"path": absolute, "skipped": "duplicate", "detail": "same file as a.png"}],
    )


def test_scan_inputs_keeps_files_given_directly_and_refuses_missing_paths(tmp_path: Path) -> None:
    gif = save(tmp_path, "anim.gif", Image.new("P", (2, 2)))
    broken = tmp_path / "broken.png"
    broken.symlink_to("missing.png")
    assert scan_inputs([gif, broken]) == ([gif, broken], [])  # the loader says what is wrong with them
    empty = tmp_path / "empty"
    empty.mkdir()
    assert scan_inputs([empty]) == ([], [])
    with pytest.raises(ImageError, match=r"nowhere: no such file or directory"):
        scan_inputs([empty, tmp_path / "nowhere"])


def test_unreadable_sub_folder_is_skipped_and_unreadable_given_folder_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "locked").mkdir()
    save(tmp_path, "a.png", Image.fromarray(RGB))
    real_listing = images_module._listing

    def listing(folder: Path) -> list[str]:
        if folder.name == "locked":  # as root, permissions cannot make a folder unreadable
            raise PermissionError(13, "Permission denied", str(folder))
        return real_listing(folder)

    monkeypatch.setattr(images_module, "_listing", listing)
    assert scan_inputs([tmp_path]) == (
        [tmp_path / "a.png"],
        [
            {
                "path": str(tmp_path / "locked"),
                "skipped": "unreadable",
                "detail": "cannot list folder: Permission denied",
            }
        ],
    )
    with pytest.raises(ImageError, match=r"locked: cannot list folder: Permission denied"):
        scan_inputs([tmp_path / "locked"])


# 8-bit round trip


def test_save_png_round_trip_equals_quantize_8bit(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    values = torch.rand(3, 16, 16, generator=generator) * 1.2 - 0.1  # includes out-of-range values
    values[0, 0, :4] = torch.tensor([0.5, 1.5, 2.5, 3.5]) / 255  # exact ties: half to even
    for image, channels in [(values, 3), (values[:1], 1), (values[0], 1), (values.numpy(), 3)]:
        path = tmp_path / f"rt{channels}.png"
        save_png(image, path)
        loaded = load_image(path, channels)
        assert loaded.format == "PNG" and loaded.mode == ("RGB" if channels == 3 else "L")
        expected = quantize_8bit(torch.as_tensor(image)).reshape(channels, 16, 16)
        assert torch.equal(loaded.tensor(), expected)
    assert torch.equal(quantize_8bit(values[0, 0, :4]) * 255, torch.tensor([0.0, 2.0, 2.0, 4.0]))


def test_quantize_8bit_rule() -> None:
    values = torch.tensor([-1.0, 0.0, 0.2, 1.0, 7.0])
    expected = torch.round(values.clamp(0, 1) * 255) / 255
    assert torch.equal(quantize_8bit(values), expected)
    assert quantize_8bit(values.double()).dtype == torch.float64


def test_save_png_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected shape"):
        save_png(torch.zeros(4, 2, 2), tmp_path / "x.png")
    with pytest.raises(ValueError, match="NaN"):
        save_png(torch.full((2, 2), float("nan")), tmp_path / "x.png")
