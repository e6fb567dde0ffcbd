"""JSON-lines result files: one self-contained record per image, appended as soon as it exists.

Batch runs write through :class:`RecordWriter`, so an interrupted run loses nothing already computed and a
rerun with the same output file skips the paths it already answered (error records are retried).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import IO


def _clean(value):
    """JSON has no inf/nan: write them as strings so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def dumps(record: dict) -> str:
    """One record as a compact, valid JSON line."""
    return json.dumps(_clean(record), ensure_ascii=False)


def read_records(path: Path) -> list[dict]:
    """Every complete record of a JSON-lines file, later lines winning per path; a cut-off line is ignored."""
    by_path: dict[str, dict] = {}
    if not path.is_file():
        return []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "path" in record:
            by_path[record["path"]] = record
    return list(by_path.values())


def read_done(path: Path) -> set[str]:
    """Paths that already have a result (not an error) in a JSON-lines file."""
    return {r["path"] for r in read_records(path) if "error" not in r}


class RecordWriter:
    """Writes records to a file (appending, resumable) or to stdout; counts errors for the exit status."""

    def __init__(self, output: Path | None, resume: bool = True) -> None:
        self.output = output
        self.done: set[str] = read_done(output) if output is not None and resume else set()
        self.errors = 0
        self.written = 0
        self._stream: IO[str]
        if output is None:
            self._stream = sys.stdout
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            self._stream = output.open("a" if resume else "w")

    def write(self, record: dict) -> None:
        """Append one record and flush, so it survives an interruption."""
        self.errors += "error" in record
        self.written += 1
        self._stream.write(dumps(record) + "\n")
        self._stream.flush()

    def close(self) -> None:
        """Close the file (stdout is left open)."""
        if self._stream is not sys.stdout:
            self._stream.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
