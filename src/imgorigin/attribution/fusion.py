"""Fused features: several layers (of one backbone or of several) as one vector, each part L2-normalised.

A fused layer is written ``A+B+...``; each part is a layer of the backbone at hand (``3.mean``, ``6``) or
``BACKBONE@LAYER`` for a layer of another backbone (``spectrum@grid``, ``efficientnet-lite0@6``). Each part is
scaled to unit length per image, then the parts are concatenated and divided by sqrt(number of parts), so every
part weighs the same in cosine similarities and the fused vector has unit length. Nothing is fitted: the
fusion is the same on training and test images, and cached per-layer features are reused as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

SEPARATOR = "+"
BACKBONE_SEPARATOR = "@"


class Part(NamedTuple):
    """One part of a fused layer: a backbone (None: the one at hand) and its layer as written."""

    backbone: str | None
    layer: str


def is_fused(layer: str) -> bool:
    """Whether a layer spec names several parts or a layer of another backbone."""
    return SEPARATOR in layer or BACKBONE_SEPARATOR in layer


def parts(layer: str) -> list[Part]:
    """The parts of a (fused) layer spec, in order: ``"3.mean+spectrum@grid"`` -> [(None, 3.mean), (spectrum, grid)]."""
    found = []
    for item in layer.split(SEPARATOR):
        name, at, part = item.strip().rpartition(BACKBONE_SEPARATOR)
        if not part or (at and not name):
            raise ValueError(f"fused layer {layer!r}: empty part in {item!r}")
        found.append(Part(name or None, part))
    return found


def spec(items: Sequence[Part]) -> str:
    """The canonical spec of resolved parts (inverse of ``parts``)."""
    return SEPARATOR.join(
        p.layer if p.backbone is None else f"{p.backbone}{BACKBONE_SEPARATOR}{p.layer}" for p in items
    )


def fuse(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """[N, D1], [N, D2], ... -> [N, D1 + D2 + ...]: each block L2-normalised per row, divided by sqrt(#blocks)."""
    scaled = []
    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        norms = np.linalg.norm(block, axis=1, keepdims=True)
        scaled.append(block / np.where(norms > 0, norms, 1.0))
    return np.concatenate(scaled, axis=1) / np.float32(np.sqrt(len(scaled)))


def fused_features(
    layer: str, features: Mapping[Part, np.ndarray] | Mapping[tuple[str | None, str], np.ndarray]
) -> np.ndarray:
    """The fused vector of a canonical spec from per-part features keyed by (backbone or None, layer)."""
    return fuse([features[part] for part in parts(layer)])
