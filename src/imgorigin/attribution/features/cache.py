"""On-disk feature cache: embed a list of image files once, reuse the features on every later run.

An entry is keyed by the sha256 of the file's bytes and lives in a folder named by a digest of the backbone
id (which includes a digest of its weights), the layer, the preprocessing and the loading channels, so a
change to any of them can never return stale features. Features are stored as safetensors shards (float32
``features`` [n, D] and the raw 32-byte digests ``sha256`` [n, 32]), never pickle; each run adds at most
one shard per ``SHARD_ROWS`` new images, and readers load only the shards holding what they need.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm import tqdm

from imgorigin.attribution.features.base import Backbone
from imgorigin.images import LoadedImage, load_images
from imgorigin.runtime import default_cache_dir, sha256_file

FORMAT_VERSION = 1
SHARD_ROWS = 4096
#: Most decoded pixel bytes (float32) held for one forward batch: a few huge files cannot exhaust memory.
BATCH_BYTES = 256 * 2**20


class FeatureStore:
    """The cached features of one backbone at one layer: sha256 -> float32 vector."""

    def __init__(self, root: str | os.PathLike[str], backbone: Backbone, layer: str) -> None:
        self.key = {
            "backbone": backbone.name,
            "backbone_id": backbone.id,
            "layer": layer,
            "preprocess": backbone.preprocess_id,
            "channels": backbone.channels,
            "dim": backbone.layer_dims[layer],
            "version": FORMAT_VERSION,
        }
        identity = {k: v for k, v in self.key.items() if k != "backbone"}  # a path in a name is no identity
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
        self.folder = Path(root) / "features" / digest

    def lookup(self, digests: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors of those digests that have one."""
        wanted = set(digests)
        found: dict[str, np.ndarray] = {}
        for shard in sorted(self.folder.glob("*.safetensors")) if wanted else []:
            with safe_open(shard, framework="np") as handle:
                names = [bytes(row).hex() for row in handle.get_tensor("sha256")]
                rows = [i for i, name in enumerate(names) if name in wanted and name not in found]
                if rows:
                    features = handle.get_tensor("features")
                    found.update((names[i], features[i]) for i in rows)
        return found

    def add(self, digests: Sequence[str], features: np.ndarray) -> None:
        """Store new vectors as one shard, written to a temporary name and renamed (atomic)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.exists():
            key_file.write_text(json.dumps(self.key, indent=2) + "\n")
        tensors = {
            "features": np.ascontiguousarray(features, dtype=np.float32),
            "sha256": np.frombuffer(b"".join(bytes.fromhex(d) for d in digests), np.uint8).reshape(-1, 32),
        }
        name = uuid.uuid4().hex
        partial = self.folder / f".{name}.partial"
        save_file(tensors, str(partial), metadata={"format": f"imgorigin-features-{FORMAT_VERSION}"})
        os.replace(partial, self.folder / f"{name}.safetensors")


class EmbeddedLayers(NamedTuple):
    """Features by layer for the readable images, their paths in input order, and (path, message) errors."""

    features: dict[str, np.ndarray]
    paths: list[str]
    errors: list[tuple[str, str]]


class Embedded(NamedTuple):
    """Features [N, D] of the readable images, their paths in input order, and (path, message) errors."""

    features: np.ndarray
    paths: list[str]
    errors: list[tuple[str, str]]


def embed_paths_layers(
    backbone: Backbone,
    paths: Sequence[str | os.PathLike[str]],
    layers: Sequence[str | int | None],
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    progress: bool | None = None,
) -> EmbeddedLayers:
    """Embed image files at several layers, one forward pass per batch, computing only what is not cached.

    Unreadable or invalid images are reported in ``errors``, never raised. ``progress`` None shows a bar
    only when stderr is a terminal.
    """
    names = list(dict.fromkeys(backbone.resolve_layer(layer) for layer in layers))
    stores = {name: FeatureStore(cache_dir or default_cache_dir(), backbone, name) for name in names}
    given = [os.fspath(p) for p in paths]
    digest_of = {path: _digest(path) for path in given}
    cached = {name: store.lookup([d for d in digest_of.values() if d]) for name, store in stores.items()}
    todo: dict[str, str] = {}  # one path per digest (or per unreadable path) still to embed
    for path, digest in digest_of.items():
        if digest is None or any(digest not in found for found in cached.values()):
            todo.setdefault(digest or path, path)
    failed = _embed_missing(backbone, list(todo.values()), stores, cached, digest_of, batch_size, progress)
    ok, errors = [], []
    for path in given:
        digest = digest_of[path]
        message = failed.get(todo.get(digest or path, path))
        if message is None and not all(digest in found for found in cached.values()):
            message = "file changed while it was being read"
        if message is None:
            ok.append(path)
        else:
            errors.append((path, message))
    features = {
        name: np.stack([cached[name][digest_of[p]] for p in ok]).astype(np.float32, copy=False)
        if ok
        else np.zeros((0, backbone.layer_dims[name]), np.float32)
        for name in names
    }
    return EmbeddedLayers(features, ok, errors)


def _embed_missing(
    backbone: Backbone,
    paths: list[str],
    stores: dict[str, FeatureStore],
    cached: dict[str, dict[str, np.ndarray]],
    digest_of: dict[str, str | None],
    batch_size: int,
    progress: bool | None,
) -> dict[str, str]:
    """Load and embed paths in batches, filling ``cached`` and the stores; returns path -> error message."""
    failed: dict[str, str] = {}
    pending: dict[str, dict[str, np.ndarray]] = {name: {} for name in stores}  # new rows, not yet on disk
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=len(paths), desc=f"embedding ({backbone.name})", unit="img", disable=not show) as bar:
        for loaded, errors in _batches(paths, backbone.channels, batch_size):
            failed.update(errors)
            features = backbone.embed_layers([image.tensor() for image in loaded], list(stores), batch_size)
            for row, image in enumerate(loaded):
                digest_of[image.path] = image.sha256  # the bytes embedded, should the file have changed
                for name, values in features.items():
                    if image.sha256 not in cached[name]:
                        cached[name][image.sha256] = pending[name][image.sha256] = values[row]
            if max(len(rows) for rows in pending.values()) >= SHARD_ROWS:
                _flush(stores, pending)
            bar.update(len(loaded) + len(errors))
    _flush(stores, pending)
    return failed


def _batches(
    paths: list[str], channels: int, batch_size: int
) -> Iterator[tuple[list[LoadedImage], list[tuple[str, str]]]]:
    """Decoded images in batches of at most ``batch_size`` files and ``BATCH_BYTES`` of pixels (whichever comes
    first), with the files that could not be read: memory follows decoded size, not the number of files."""
    loaded: list[LoadedImage] = []
    errors: list[tuple[str, str]] = []
    held = 0
    for path in paths:
        images, failed = load_images([path], channels=channels)
        loaded += images
        errors += failed
        held += sum(image.pixels.nbytes for image in images)
        if len(loaded) + len(errors) >= batch_size or held >= BATCH_BYTES:
            yield loaded, errors
            loaded, errors, held = [], [], 0
    if loaded or errors:
        yield loaded, errors


def _flush(stores: dict[str, FeatureStore], pending: dict[str, dict[str, np.ndarray]]) -> None:
    """Write each layer's pending rows as one shard and empty them."""
    for name, rows in pending.items():
        if rows:
            stores[name].add(list(rows), np.stack(list(rows.values())))
            rows.clear()


def embed_paths(
    backbone: Backbone,
    paths: Sequence[str | os.PathLike[str]],
    layer: str | int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    progress: bool | None = None,
) -> Embedded:
    """Embed image files at one layer through the cache: (features [N, D], ok paths, errors)."""
    result = embed_paths_layers(backbone, paths, [layer], cache_dir, batch_size, progress)
    return Embedded(result.features[backbone.resolve_layer(layer)], result.paths, result.errors)


def _digest(path: str) -> str | None:
    """The content key of a file, or None when it cannot be read (its error comes from loading it)."""
    try:
        return sha256_file(path)
    except OSError:
        return None
