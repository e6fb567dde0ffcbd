"""Batch runs over files and folders, as the CLI (and any caller) makes them: every input accounted for, each
record written as soon as its image is decided, and a rerun with the same output resuming where it stopped.

Exit status of a run: 0 when every image found was scored, 1 when some could not be read (their records hold
``error``); files left out of folders (``skipped`` records: hidden, unsupported format, FIFO, duplicate, ...)
are recorded and counted but do not change it. Usage and configuration errors (2) are raised before any work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imgorigin.errors import UsageError
from imgorigin.images import scan_inputs
from imgorigin.records import RecordWriter

#: Decides image files (explicit paths, folders already expanded), yielding one record per file.
Decide = Callable[[list[Path]], Iterable[dict]]


@dataclass(frozen=True)
class BatchSummary:
    """What one run did: images found, already answered before it, and records of each kind written now."""

    found: int
    resumed: int
    written: int
    errors: int
    skipped: int

    @property
    def exit_code(self) -> int:
        """0: every image found scored; 1: some unreadable."""
        return 1 if self.errors else 0

    def line(self) -> str:
        """The one-line summary a command prints at the end."""
        scored = self.written - self.errors - self.skipped
        resumed = f", {self.resumed} already answered" if self.resumed else ""
        return f"{self.found} images: {scored} scored, {self.errors} unreadable, {self.skipped} skipped{resumed}"


def run_batch(
    paths: Sequence[str | os.PathLike[str]],
    decide: Decide,
    *,
    output: Path | None,
    identity: dict,
    restart: bool = False,
    log: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Scan ``paths``, write the skip entries, and decide every image the output does not already answer.

    ``identity`` (e.g. ``Verifier.identity()``) is stored in the output; resuming an output written with another
    identity raises ``UsageError``, ``restart=True`` starts it anew. An input with no image at all is a usage error.
    """
    images, skipped = scan_inputs(paths)
    if not images and not skipped:
        raise UsageError(f"no image found in {', '.join(map(str, paths))}")
    with RecordWriter(output, identity, restart=restart) as writer:
        writer.write_skips(skipped)
        todo = [path for path in images if str(path) not in writer.done]
        if log is not None and len(todo) < len(images):
            log(f"resuming {output}: {len(images) - len(todo)} of {len(images)} images already answered")
        for record in decide(todo) if todo else ():
            writer.write(record)
    return BatchSummary(len(images), len(images) - len(todo), writer.written, writer.errors, writer.skipped)
