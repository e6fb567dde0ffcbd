"""JSON-lines result files: one self-contained record per input, written as soon as it exists, resumable.

File format (UTF-8, one JSON object per line):

* Line 1, when the writer was given a run identity, is the header ``{"imgorigin_run": {...identity...}}``:
  whatever decides the answers (e.g. ``model``, ``weight_hash``, ``calibration_sha256``, ``alpha``). It is not a
  record: :func:`read_records` skips it and :func:`read_identity` returns it.
* Every other line is a record with a ``path``. A result has whatever fields its command writes; an input that
  could not be read is ``{"path", "error"}``; an input left out on purpose is ``{"path", "skipped", "detail"}``
  (see ``imgorigin.images.scan_inputs`` for the reason codes).
* Non-finite floats (NaN, inf) are written as ``null``: JSON has no such numbers.
* A path that is not valid UTF-8 (Python holds its bytes as surrogate escapes, e.g. ``"caf\\udce9.png"``) is
  written with ``\\udcXX`` JSON escapes, so the file stays valid UTF-8 and ``os.fsencode(record["path"])``
  gives back the original bytes.

:class:`RecordWriter` is the only writer. Opening an existing file to resume it:

* its identity must equal the run's (:class:`~imgorigin.errors.UsageError` naming the file and the differing
  keys otherwise); a file without a header that holds records is refused when an identity is given, since
  nothing says which run wrote it; ``restart=True`` starts the file anew instead;
* it is repaired and compacted when needed: a cut-off or invalid line (a run killed mid-write) is dropped and
  only the latest record per path is kept, rewritten through a temporary file and an atomic rename;
* ``writer.done`` is the set of paths that already have a result (neither ``error`` nor ``skipped``): the
  caller skips those and writes everything else again; a record for a path already in the file supersedes it,
  and closing the writer compacts the file again, so after any number of reruns it holds one line per path.

Every write is flushed (a killed process loses nothing already written and leaves at most one cut-off last
line); ``os.fsync`` runs at most once per ``FSYNC_INTERVAL`` seconds and on close, bounding what a power loss
can take to about a second of records (an fsync per record cost 0.26 ms here, 0.26 s per 1000 records; a flush
alone 4 ms per 1000).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from imgorigin.errors import UsageError

logger = logging.getLogger("imgorigin")

HEADER_KEY = "imgorigin_run"
FSYNC_INTERVAL = 1.0
_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(value: Any) -> Any:
    """JSON has no inf/nan: write them as null so every line stays valid, standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _json(value: Any) -> str:
    """JSON text of a value on one line: NaN/inf become null, lone surrogates become ``\\udcXX`` escapes."""
    text = json.dumps(_clean(value), ensure_ascii=False, allow_nan=False)
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def dumps(record: dict) -> str:
    """One record as one valid JSON line (no newline), encodable as UTF-8 whatever its strings hold."""
    return _json(record)


def _parse_line(line: bytes) -> dict | None:
    """The JSON object on one line, or None for a cut-off, invalid or non-object line."""
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _is_header(value: dict) -> bool:
    """Whether a parsed line is the run header."""
    return set(value) == {HEADER_KEY} and isinstance(value[HEADER_KEY], dict)


class _Contents:
    """A records file as parsed: its identity header, the latest record per path, and what compaction would fix."""

    def __init__(self, data: bytes) -> None:
        self.identity: dict | None = None
        self.records: dict[str, dict] = {}
        self.dropped = 0  # cut-off, invalid or non-record lines
        self.superseded = 0  # records replaced by a later one for the same path
        for number, line in enumerate(data.splitlines()):
            value = _parse_line(line)
            if value is not None and number == 0 and _is_header(value):
                self.identity = value[HEADER_KEY]
            elif value is not None and isinstance(value.get("path"), str):
                self.superseded += self.records.pop(value["path"], None) is not None  # the latest goes last
                self.records[value["path"]] = value
            elif line.strip():
                self.dropped += 1
        self.unterminated = bool(data) and not data.endswith(b"\n")

    def needs_compaction(self) -> bool:
        """Whether the file holds anything but whole lines, one per path (appending to it would be wrong)."""
        return bool(self.dropped or self.superseded or self.unterminated)

    def lines(self) -> bytes:
        """The compact file: header (if any), then one line per path."""
        head = [{HEADER_KEY: self.identity}] if self.identity is not None else []
        return b"".join((dumps(value) + "\n").encode() for value in [*head, *self.records.values()])


def _read(path: Path) -> bytes:
    """A records file's bytes; a missing file reads as empty."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def read_records(path: Path) -> list[dict]:
    """Every complete record of a JSON-lines file, the latest per path; the header and cut-off lines are skipped."""
    return list(_Contents(_read(Path(path))).records.values())


def read_identity(path: Path) -> dict | None:
    """The run identity in a records file's header, or None when it has none."""
    return _Contents(_read(Path(path))).identity


def read_done(path: Path) -> set[str]:
    """Paths that already have a result (not an error, not a skip) in a JSON-lines file."""
    return {r["path"] for r in read_records(path) if is_result(r)}


def is_result(record: dict) -> bool:
    """Whether a record is an answer, as opposed to an error or a skipped input (both are retried on resume)."""
    return "error" not in record and "skipped" not in record


def _normalised(identity: dict) -> dict:
    """The identity as it reads back from the file (tuples become lists, NaN null), so both compare equal."""
    return json.loads(dumps(identity))


def differing_keys(written: dict, wanted: dict) -> list[str]:
    """Keys whose values differ between two identities, a key missing on one side included, sorted."""
    return sorted(key for key in written.keys() | wanted.keys() if written.get(key, ...) != wanted.get(key, ...))


def _check_identity(output: Path, contents: _Contents, identity: dict) -> None:
    """Refuse to resume a file another run wrote: a different identity, or records with no identity at all."""
    if contents.identity is None and contents.records:
        raise UsageError(
            f"{output}: cannot resume: the file has records but no run header (written by an older imgorigin or "
            "another tool), so nothing says which run wrote them; pass a new output file or --restart"
        )
    if contents.identity is not None and contents.identity != identity:
        keys = differing_keys(contents.identity, identity)
        details = ", ".join(
            f"{key} (file: {_json(contents.identity.get(key))}, now: {_json(identity.get(key))})" for key in keys
        )
        raise UsageError(
            f"{output}: cannot resume: the file was written by a different run; differing: {details}; "
            "pass a new output file or --restart"
        )


def _temporary(path: Path) -> Path:
    """The temporary file a compaction of path writes before renaming it over path."""
    return path.with_name(f".{path.name}.compact.tmp")


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace path with data through a temporary file, fsync and rename: a crash leaves the old or the new file."""
    temporary = _temporary(path)
    with temporary.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in folder durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class RecordWriter:
    """Writes records to a JSON-lines file (resumable, see the module docstring) or to stdout; counts outcomes.

    ``output`` None writes to stdout (no header, no resume). ``identity`` is what decides the answers: a file
    with a different one is refused; None skips the check (and keeps whatever header the file has).
    ``restart=True`` (or the older spelling ``resume=False``) discards the file's contents and starts it anew.
    Attributes: ``done`` (paths with a result, kept up to date), ``written``, ``errors`` and ``skipped``
    (records of each kind written through this writer).
    """

    def __init__(
        self, output: Path | None, identity: dict | None = None, *, resume: bool = True, restart: bool = False
    ) -> None:
        self.output = Path(output) if output is not None else None
        self.identity = _normalised(identity) if identity is not None else None
        self.done: set[str] = set()
        self.written = self.errors = self.skipped = 0
        self._paths: set[str] = set()
        self._skips: dict[str, dict] = {}
        self._superseded = False
        self._last_sync = time.monotonic()
        self._stream: IO[str]
        if self.output is None:
            self._stream = sys.stdout
            return
        try:
            self._stream = self._open(self.output, restart or not resume)
        except OSError as err:
            raise UsageError(f"{self.output}: cannot write the output file: {err.strerror or err}") from None

    def _open(self, output: Path, restart: bool) -> IO[str]:
        """Check, repair and compact the file (or start it anew), then open it for appending."""
        output.parent.mkdir(parents=True, exist_ok=True)
        _temporary(output).unlink(missing_ok=True)  # left by a run killed while compacting
        contents = _Contents(b"" if restart else _read(output))
        written_identity = contents.identity
        if self.identity is not None:
            _check_identity(output, contents, self.identity)
            contents.identity = self.identity
        if contents.dropped:
            logger.warning("%s: dropped %d cut-off or invalid line(s) before resuming", output, contents.dropped)
        if restart or contents.needs_compaction() or contents.identity != written_identity or not output.exists():
            _atomic_write(output, contents.lines())
        self._paths = set(contents.records)
        self.done = {path for path, record in contents.records.items() if is_result(record)}
        self._skips = {path: record for path, record in contents.records.items() if "skipped" in record}
        return output.open("a", encoding="utf-8", newline="\n")

    def write(self, record: dict) -> None:
        """Append one record and flush it (fsync at most once a second), so it survives an interruption."""
        self._stream.write(dumps(record) + "\n")
        self._stream.flush()
        self._count(record)
        if self.output is not None and time.monotonic() - self._last_sync >= FSYNC_INTERVAL:
            self._sync()

    def write_all(self, records: Iterable[dict]) -> None:
        """Write several records."""
        for record in records:
            self.write(record)

    def write_skips(self, entries: Iterable[dict]) -> None:
        """Write the skip entries of ``imgorigin.images.scan_inputs`` the file does not already hold as they are, so
        that resuming a file does not rewrite it for skips that have not changed."""
        for entry in entries:
            if self._skips.get(entry["path"]) != entry:
                self.write(entry)

    def _count(self, record: dict) -> None:
        """Update the counters and the done/superseded bookkeeping for one written record."""
        self.written += 1
        self.errors += "error" in record
        self.skipped += "skipped" in record
        path = record.get("path")
        if not isinstance(path, str):
            return
        self._superseded |= path in self._paths
        self._paths.add(path)
        if is_result(record):
            self.done.add(path)
        else:
            self.done.discard(path)

    def _sync(self) -> None:
        """Force written records to disk."""
        os.fsync(self._stream.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Sync and close the file, compacting it when a record superseded an earlier one (stdout is left open)."""
        if self.output is None or self._stream.closed:
            return
        self._sync()
        self._stream.close()
        if self._superseded:
            _atomic_write(self.output, _Contents(_read(self.output)).lines())

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
