"""Shared by the must-show helpers: write an image set as PNGs, read one verify run's records by group."""

import json
from pathlib import Path

import numpy as np
import torch

from imgorigin.images import save_png


def write(images: torch.Tensor, folder: Path) -> None:
    """Save images ``[N, C, H, W]`` in [0, 1] as ``folder/000.png``, ``001.png``, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        save_png(image, folder / f"{i:03d}.png")


def scored_by_group(path: Path, groups: tuple[str, ...]) -> tuple[list[dict], np.ndarray, np.ndarray, np.ndarray]:
    """The scored records of a verify run's JSON-lines file, and per record its group (the first folder of its path
    named in ``groups``), score and verdict (``belongs``)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    records = [r for r in records if "score" in r]
    group = np.array([next(p for p in Path(r["path"]).parts if p in groups) for r in records])
    score = np.array([r["score"] for r in records])
    belongs = np.array([bool(r["belongs"]) for r in records])
    return records, group, score, belongs
