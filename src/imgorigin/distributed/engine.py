"""Which engine decides a batch, and the pieces every engine shares: manifests of inputs and the Parquet sink.

A command builds its scorer as it always did (a ``Verifier``, ``Attributor`` or ``TwoStageAttributor``) for the
local engine, and a :class:`Job` saying how a remote worker builds the same one; :meth:`EngineConfig.decide`
gives ``imgorigin.batch.run_batch`` the function that turns image files into records on the chosen engine. The
run identity, the resume logic and the writing stay in ``run_batch`` and ``RecordWriter``, whatever the engine.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from imgorigin.errors import UsageError

_SURROGATE = re.compile("[\ud800-\udfff]")

#: What turns a list of image files into their records (``verifier.verify_paths``, ``attributor.attribute_paths``).
Records = Callable[[list[Path]], Iterable[dict]]

#: Prefix of a PATHS argument that names a manifest file instead of an image or a folder.
MANIFEST_PREFIX = "@"
#: Manifest formats by suffix (anything else is text: one path per line).
TABLE_SUFFIXES = (".csv", ".parquet")


class Engine(StrEnum):
    """Where images are scored."""

    local = "local"
    ray = "ray"


@dataclass(frozen=True)
class Job:
    """How a worker builds the scorer the driver built: ``build()`` (picklable: a module-level function or a
    ``functools.partial`` of one, with plain arguments) returns an object whose method ``method(paths)`` yields
    one record per path, and whose ``identity()`` must equal ``identity`` (the driver's run identity): a worker
    with other weights, another calibration or another version refuses to start instead of mixing runs."""

    build: Callable[[], Any]
    method: str
    identity: dict


@dataclass(frozen=True)
class EngineConfig:
    """The engine options a batch command takes (``--engine``, ``--address``, ...), as one settings object."""

    engine: Engine = field(
        default=Engine.local,
        metadata={
            "help": "local: score in this process; ray: on a Ray Data pipeline (an actor pool; needs imgorigin's "
            "ray extra), same records and same --output file."
        },
    )
    address: str = field(
        default="",
        metadata={
            "help": "With --engine ray: the Ray cluster to join (HOST:6379, 'auto': the one `ray start` runs on this "
            "machine, ray://HOST:10001); empty: $RAY_ADDRESS or a `ray start` cluster here, else a local one just "
            "for this run."
        },
    )
    actors: int = field(default=1, metadata={"help": "With --engine ray: scoring actors (each loads the model once)."})
    ray_batch_size: int = field(
        default=32, metadata={"help": "With --engine ray: images per actor call (one inversion or forward batch)."}
    )
    num_cpus: float = field(
        default=1.0, metadata={"help": "With --engine ray: CPUs reserved per actor (and its torch threads)."}
    )
    num_gpus: float = field(
        default=0.0, metadata={"help": "With --engine ray: GPUs per actor (0.5: two actors share a GPU)."}
    )
    parquet: Path | None = field(
        default=None,
        metadata={
            "help": "Also write the records as a Parquet dataset in this folder once the run ends (needs pyarrow, "
            "in the ray extra); nested fields are JSON text. Needs --output."
        },
    )

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise ValueError(f"--actors must be at least 1, got {self.actors}")
        if self.ray_batch_size < 1:
            raise ValueError(f"--ray-batch-size must be at least 1, got {self.ray_batch_size}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("--num-cpus and --num-gpus must not be negative")
        if self.engine is Engine.local:
            changed = [
                f.name
                for f in dataclasses.fields(self)
                if f.name not in ("engine", "parquet") and getattr(self, f.name) != f.default
            ]
            if changed:
                names = ", ".join("--" + name.replace("_", "-") for name in changed)
                raise ValueError(f"{names} only apply with --engine ray")

    def decide(self, local: Records, job: Callable[[], Job], *, progress: bool = False) -> Records:
        """The records function of this engine: ``local`` itself, or the Ray pipeline over ``job()`` (called only
        for the Ray engine, so the local engine pays nothing for it)."""
        if self.engine is Engine.local:
            return local
        from imgorigin.distributed.ray_engine import ray_records

        return ray_records(job(), self, progress=progress)

    def finish(self, output: Path | None) -> Path | None:
        """After the run: write the Parquet dataset when asked; returns its folder."""
        if self.parquet is None:
            return None
        if output is None:
            raise UsageError("--parquet needs --output (the Parquet dataset is written from the results file)")
        write_parquet(output, self.parquet)
        return self.parquet


def read_manifest(path: str | os.PathLike[str]) -> list[str]:
    """Image paths listed in a manifest: a ``.parquet`` or ``.csv`` file (its ``path`` column, else its first
    column) or a text file (one path per line; blank lines and lines starting with ``#`` are ignored). A relative
    path is relative to the manifest's folder; ``file://`` URIs are paths. Other URI schemes (s3://, gs://) are
    refused: the image loader reads files, so every worker must see the same file system (a shared mount)."""
    manifest = Path(path)
    if not manifest.is_file():
        raise UsageError(f"manifest {manifest}: no such file")
    suffix = manifest.suffix.lower()
    if suffix == ".parquet":
        entries = _parquet_column(manifest)
    elif suffix == ".csv":
        with manifest.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.reader(stream))
        header = rows[0] if rows else []
        column = header.index("path") if "path" in header else 0
        entries = [row[column] for row in rows[1:] if len(row) > column]
    else:
        lines = manifest.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return [_local_path(entry, manifest) for entry in entries if entry]


def _parquet_column(manifest: Path) -> list[str]:
    """The ``path`` (else first) column of a Parquet manifest as strings."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"manifest {manifest}: reading Parquet needs pyarrow (pip install 'imgorigin[ray]')") from None
    table = pq.read_table(manifest)
    name = "path" if "path" in table.column_names else table.column_names[0]
    return [str(value) for value in table.column(name).to_pylist() if value is not None]


def _local_path(entry: str, manifest: Path) -> str:
    """A manifest entry as a file path (``file://`` stripped, relative to the manifest's folder)."""
    if entry.startswith("file://"):
        entry = entry[len("file://") :]
    elif "://" in entry:
        raise UsageError(
            f"manifest {manifest}: {entry!r}: only file paths (or file:// URIs) that every worker can read are "
            "supported; copy or mount the images first"
        )
    return entry if os.path.isabs(entry) else os.path.join(manifest.parent, entry)


def expand_manifests(paths: Sequence[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    """PATHS as given, with every ``@FILE`` that is not itself an existing path replaced by the paths its
    manifest lists (:func:`read_manifest`)."""
    expanded: list[str | os.PathLike[str]] = []
    for given in paths:
        text = os.fspath(given)
        if isinstance(text, str) and text.startswith(MANIFEST_PREFIX) and not os.path.lexists(text):
            expanded.extend(read_manifest(text[len(MANIFEST_PREFIX) :]))
        else:
            expanded.append(given)
    return expanded


def _iter_records(path: Path) -> Iterator[dict]:
    """The records of a (compacted) results file, one line at a time: the header is skipped."""
    from imgorigin.records import HEADER_KEY

    with path.open("rb") as stream:
        for line in stream:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and HEADER_KEY not in value:
                yield value


def _column_value(value: Any) -> Any:
    """A record value as a Parquet cell: scalars as they are, nested dicts and lists as JSON text."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


def write_parquet(records_file: Path, folder: Path, *, rows_per_file: int = 100_000) -> list[Path]:
    """Write a results file's records to ``folder/part-NNNNN.parquet`` files, streaming (memory bounded by
    ``rows_per_file``): one column per record field (missing: null), nested values as JSON text, the run header
    in each file's metadata (``imgorigin_run``). Existing part files in ``folder`` are replaced."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("--parquet needs pyarrow (pip install 'imgorigin[ray]')") from None
    from imgorigin.records import HEADER_KEY, read_identity

    types: dict[str, set[type]] = {}
    for record in _iter_records(records_file):  # first pass: the columns and their Python types
        for key, value in record.items():
            types.setdefault(key, set()).add(type(_column_value(value)))
    schema = pa.schema([(key, _arrow_type(kinds)) for key, kinds in types.items()])
    identity = read_identity(records_file)
    schema = schema.with_metadata({HEADER_KEY: json.dumps(identity)} if identity is not None else {})
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.parquet"):
        old.unlink()
    written: list[Path] = []
    rows: list[dict] = []

    def flush() -> None:
        target = folder / f"part-{len(written):05d}.parquet"
        columns = {key: [_cell(row.get(key), schema.field(key).type) for row in rows] for key in types}
        pq.write_table(pa.table(columns, schema=schema), target)
        written.append(target)
        rows.clear()

    for record in _iter_records(records_file):
        rows.append(record)
        if len(rows) >= rows_per_file:
            flush()
    if rows or not written:
        flush()
    return written


def _arrow_type(kinds: set[type]) -> Any:
    """The Arrow type of a column whose (non-null) cells have these Python types."""
    import pyarrow as pa

    kinds = kinds - {type(None)}
    if kinds == {bool}:
        return pa.bool_()
    if kinds and kinds <= {int}:
        return pa.int64()
    if kinds and kinds <= {int, float}:
        return pa.float64()
    return pa.string()


def _cell(value: Any, arrow_type: Any) -> Any:
    """One cell converted to its column's type (a column of mixed types holds JSON text)."""
    import pyarrow as pa

    value = _column_value(value)
    if value is None:
        return None
    if arrow_type == pa.string() and not isinstance(value, str):
        value = json.dumps(value)
    if isinstance(value, str):  # a non-UTF-8 path's surrogate escapes, written as the results file writes them
        return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", value)
    if arrow_type == pa.float64():
        return float(value)
    return value
