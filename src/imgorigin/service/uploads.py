"""Multipart uploads streamed to disk under caps: the body, each file and the number of files are bounded while
the bytes arrive, so an oversized upload is refused (413) without being held in memory or written in full.

Files are stored under server-chosen names (``00000``, ``00001``, ...) in a folder of their own; the client's
file name is kept only as the public name its records carry. The format is sniffed from the first bytes.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.requests import Request

from imgorigin.service.errors import ServiceError

#: The multipart field that carries image files; every other part must be a short text field.
IMAGES_FIELD = "images"
MAX_FIELDS = 16
MAX_FIELD_BYTES = 1024
MAX_NAME_CHARS = 255
_HEAD = 16
#: (magic prefix, format) of the formats the library decodes; GIF is recognised only to say it is not read.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
READABLE_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "BMP", "TIFF"})


def stored_name(index: int) -> str:
    """The server's file name for the index-th upload of a request or job (never the client's name)."""
    return f"{index:05d}"


def sniff(head: bytes) -> str | None:
    """The image format the first bytes of a file announce (magic numbers, never the name), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


@dataclass
class Upload:
    """One uploaded file: the client's name for it, where it is stored, its size and its sniffed format."""

    name: str
    path: Path
    size: int = 0
    format: str | None = None


@dataclass
class Form:
    """A parsed upload: short text fields and the image files, stored in ``folder``."""

    folder: Path
    fields: dict[str, str] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)

    def text(self, name: str) -> str | None:
        """A text field's value, or None when it was not sent."""
        return self.fields.get(name)


class _Receiver:
    """python-multipart callbacks that write image parts to disk and keep text fields, enforcing the caps."""

    def __init__(self, form: Form, max_file_bytes: int, max_files: int) -> None:
        self.form, self.max_file_bytes, self.max_files = form, max_file_bytes, max_files
        self._header_name, self._header_value = b"", b""
        self._headers: dict[bytes, bytes] = {}
        self._field: str | None = None
        self._text = bytearray()
        self._upload: Upload | None = None
        self._stream: BinaryIO | None = None
        self._head = b""

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._add_header_bytes("_header_name", data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header_bytes("_header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _add_header_bytes(self, attribute: str, data: bytes) -> None:
        setattr(self, attribute, getattr(self, attribute) + data)

    def _part_begin(self) -> None:
        self._headers, self._field, self._text, self._upload, self._head = {}, None, bytearray(), None, b""

    def _header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if name == IMAGES_FIELD:
            if filename is None:
                raise ServiceError(400, "bad_upload", f"the {IMAGES_FIELD!r} parts must be files (with a filename)")
            if len(self.form.files) >= self.max_files:
                raise ServiceError(413, "too_many_files", f"at most {self.max_files} images per request")
            public = filename.decode("utf-8", "replace")[:MAX_NAME_CHARS] or f"upload-{len(self.form.files)}"
            self._upload = Upload(public, self.form.folder / stored_name(len(self.form.files)))
            self._stream = self._upload.path.open("wb")
            self.form.files.append(self._upload)
        elif filename is not None:
            raise ServiceError(400, "unexpected_field", f"files go in the {IMAGES_FIELD!r} field, not {name!r}")
        elif len(self.form.fields) >= MAX_FIELDS:
            raise ServiceError(400, "unexpected_field", f"at most {MAX_FIELDS} text fields per request")
        else:
            self._field = name

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._upload is not None:
            self._upload.size += len(chunk)
            if self._upload.size > self.max_file_bytes:
                raise ServiceError(
                    413, "file_too_large", f"{self._upload.name}: over the {self.max_file_bytes}-byte limit per image"
                )
            if len(self._head) < _HEAD:
                self._head += chunk[: _HEAD - len(self._head)]
            self._stream.write(chunk)
        elif self._field is not None:
            self._text += chunk
            if len(self._text) > MAX_FIELD_BYTES:
                raise ServiceError(400, "field_too_large", f"field {self._field!r}: over {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._upload is not None:
            self.close()
            self._upload.format = sniff(self._head)
        elif self._field is not None:
            self.form.fields[self._field] = self._text.decode("utf-8", "replace")

    def close(self) -> None:
        """Close the file being written, if any."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None


async def _parse(request: Request, form: Form, max_bytes: int, max_file_bytes: int, max_files: int) -> None:
    """Stream the request body through the multipart parser into ``form``, counting every byte."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise ServiceError(415, "unsupported_media_type", "send multipart/form-data (form fields and image files)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ServiceError(413, "request_too_large", f"request body over the {max_bytes}-byte limit")
    receiver = _Receiver(form, max_file_bytes, max_files)
    parser = MultipartParser(options[b"boundary"], receiver.callbacks())
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes:
                raise ServiceError(413, "request_too_large", f"request body over the {max_bytes}-byte limit")
            parser.write(chunk)
        parser.finalize()
        if parser.state != MultipartState.END:
            raise ServiceError(400, "bad_upload", "the multipart body ended before its closing boundary")
    except ServiceError:
        raise
    except Exception as err:  # the parser's errors on malformed bodies
        raise ServiceError(400, "bad_upload", f"malformed multipart body: {err}") from None
    finally:
        receiver.close()


@asynccontextmanager
async def receive(
    request: Request, root: Path, *, max_bytes: int, max_file_bytes: int, max_files: int
) -> AsyncIterator[Form]:
    """The request's form with its files stored in a new folder under ``root``, removed on exit (unless moved)."""
    folder = root / uuid.uuid4().hex
    folder.mkdir(parents=True)
    try:
        form = Form(folder)
        await _parse(request, form, max_bytes, max_file_bytes, max_files)
        yield form
    finally:
        shutil.rmtree(folder, ignore_errors=True)
