"""Probe: would a one-step student with a narrow range (a bottleneck) be a usable generator?

Reconstruction can only decide for a generator whose images form a thin set; ``ddpm-one-step`` maps 784 noise values
onto 784 pixels. A student that reads the noise through a ``d``-value bottleneck has a ``d``-dimensional range, so
real images would lie off it. This probe distils two such students from the zoo ``ddpm`` exactly as the shipped
student is distilled (``imgorigin.zoo.training.onestep.distil`` with the recipe's settings: regression onto the
teacher's deterministic DDIM outputs of the same noise, AdamW, warm-up + cosine, weight averaging, 1500 steps), from
scratch instead of from the teacher's weights, and compares their held-out regression error with the shipped
student's:

- ``linear-64``: the noise through a learned linear map to 64 values, then an upsampling convolutional decoder;
- ``conv-128``: a convolutional encoder of the noise to 128 values, then the same decoder.

Run: ``python benchmarks/one_step_bottleneck.py [--sheet PNG]`` (about 20 min on 2 CPU cores: 12 000 teacher pairs,
then the recipe's 1500 steps per student). MSE is on [-1, 1] images, over the last 1000 pairs (never trained on).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from imgorigin import zoo
from imgorigin.zoo.registry import get_recipe
from imgorigin.zoo.training.onestep import distil, teacher_pairs

PAIRS, HELD_OUT = 12_000, 1_000


def print_nothing(_: str) -> None:
    """The training loop's progress lines are not printed."""


class Bottleneck(nn.Module):
    """Noise ``[B, 1, 28, 28]`` → ``encoder`` → ``d`` values → upsampling decoder → tanh image."""

    def __init__(self, encoder: nn.Module, d: int, width: int = 32) -> None:
        super().__init__()
        self.encoder, self.width = encoder, width
        self.fc = nn.Linear(d, 4 * width * 49)
        self.decoder = nn.Sequential(
            nn.SiLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(4 * width, 2 * width, 3, padding=1),
            nn.GroupNorm(8, 2 * width),
            nn.SiLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * width, width, 3, padding=1),
            nn.GroupNorm(8, width),
            nn.SiLU(),
            nn.Conv2d(width, 1, 3, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc(self.encoder(z)).view(-1, 4 * self.width, 7, 7))


def students(width: int = 32) -> dict[str, Bottleneck]:
    """The two bottlenecked students, freshly initialised."""
    linear = nn.Sequential(nn.Flatten(), nn.Linear(784, 64, bias=False))
    conv = nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(width, 2 * width, 4, 2, 1),
        nn.GroupNorm(8, 2 * width),
        nn.SiLU(),
        nn.Conv2d(2 * width, 4 * width, 4, 2, 1),
        nn.GroupNorm(8, 4 * width),
        nn.SiLU(),
        nn.Flatten(),
        nn.Linear(4 * width * 49, 128),
    )
    return {"linear-64": Bottleneck(linear, 64, width), "conv-128": Bottleneck(conv, 128, width)}


def main() -> None:
    """Print the held-out MSE of the shipped student and of each bottlenecked one."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sheet", help="write a PNG: teacher, shipped student, then each bottlenecked student (16 each)")
    args = ap.parse_args()
    torch.manual_seed(0)
    recipe = get_recipe("ddpm-one-step").config

    began = time.perf_counter()
    noise, targets = teacher_pairs(zoo.load("ddpm"), PAIRS, torch.Generator().manual_seed(5), torch.device("cpu"))
    print(f"{PAIRS} teacher pairs in {time.perf_counter() - began:.0f} s", flush=True)
    train, test = slice(0, PAIRS - HELD_OUT), slice(PAIRS - HELD_OUT, PAIRS)
    with torch.no_grad():
        shipped = zoo.load("ddpm-one-step").decode(noise[test]) * 2 - 1
    rows = {"teacher": targets[test][:16], "shipped student": shipped[:16]}
    print(f"shipped student (full UNet, 784 -> 784): held-out MSE {F.mse_loss(shipped, targets[test]):.4f}")
    for name, student in students().items():
        began = time.perf_counter()
        order = torch.Generator().manual_seed(1)
        averaged, _ = distil(student, noise[train], targets[train], recipe, order, log=print_nothing)
        with torch.no_grad():
            out = averaged(noise[test])
        rows[name] = out[:16]
        print(f"{name}: held-out MSE {F.mse_loss(out, targets[test]):.4f} ({time.perf_counter() - began:.0f} s)")
    if args.sheet:
        grid = torch.cat([torch.cat(list(r[:, 0]), 1) for r in rows.values()], 0)
        pixels = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        Image.fromarray(np.kron(pixels, np.ones((2, 2), np.uint8))).save(args.sheet)
        print(f"sheet (rows: {', '.join(rows)}): {args.sheet}")


if __name__ == "__main__":
    main()
