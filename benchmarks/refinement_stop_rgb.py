"""Paired check of the refinement's stopping rule on the colour GAN (zoo dcgan-rgb), one attempt, no retries.

Inverts 60 fresh 8-bit samples of dcgan-rgb (seed 9000) and 20 held-out photo crops (seed 4000) with the rule the
shipped calibrations were made with (60 Levenberg–Marquardt iterations, patience 5, tolerance 1 %) and with the
current defaults (100 iterations, patience 10, tolerance 10 %), and prints, per rule, the share of members at the
8-bit floor (best MSE <= 1e-5), the lowest crop score and the seconds per image. Run:
``python benchmarks/refinement_stop_rgb.py`` (about 25 min on 2 CPU cores).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from imgorigin import zoo
from imgorigin.images import quantize_8bit
from imgorigin.verification.inversion import EARLIER_REFINEMENT, InversionConfig, Inverter, image_key
from imgorigin.zoo.photos import random_crops

RULES = {"earlier (60 it, patience 5, 1 %)": InversionConfig(**EARLIER_REFINEMENT), "defaults": InversionConfig()}


def main() -> None:
    """Print one line per stopping rule."""
    torch.set_num_threads(2)
    gen = zoo.load("dcgan-rgb")
    members = quantize_8bit(gen.sample(60, seed=9000))
    crops = random_crops("heldout", 20, 64, 4000, flip=False)
    for label, cfg in RULES.items():
        times, scores = [], []
        for images in (members, crops):
            start = time.perf_counter()
            scores.append(Inverter(gen, cfg)(images, keys=[image_key(x) for x in images]).scores)
            times.append((time.perf_counter() - start) / len(images))
        floor = scores[0] <= 1e-5
        print(
            f"{label}: members at the floor {floor.mean():.1%} ({floor.sum()}/{floor.size}), above 1e-4 "
            f"{np.mean(scores[0] > 1e-4):.1%}, {times[0]:.2f} s/image | crops: lowest {scores[1].min():.1e}, "
            f"{times[1]:.2f} s/image",
            flush=True,
        )


if __name__ == "__main__":
    main()
