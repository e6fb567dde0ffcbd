"""Probe of verification on zoo:ddpm: 10 own samples against 10 real test images, two initialisations.

Prints, per initialisation, the AUROC of the reconstruction score (members should score lower) and of the
typicality of the inverted x_T under the N(0, I) prior (|mean x_T² − 1|, lower = more typical).
Usage: python benchmarks/ddpm_probe.py   (about 4 minutes on 2 CPU cores)
"""

import time

import numpy as np
import torch

from imgorigin import zoo
from imgorigin.images import quantize_8bit
from imgorigin.metrics import auroc
from imgorigin.verification.inversion import InversionConfig, invert
from imgorigin.zoo import data

N = 10


def main() -> None:
    generator = zoo.load("ddpm")
    images = torch.cat([quantize_8bit(zoo.sample("ddpm", N, seed=31)), data.test_images()[5000 : 5000 + N]])
    for name, config in (
        ("random start", InversionConfig(init="random")),
        ("DDIM-inversion start", InversionConfig(init="encoder")),
    ):
        start = time.perf_counter()
        result = invert(generator, images, config, return_latents=True)
        atypical = np.abs(result.latents.flatten(1).pow(2).mean(1).numpy() - 1)
        print(
            f"{name}: score AUROC {auroc(-result.scores[:N], -result.scores[N:]):.3f} (median MSE members "
            f"{np.median(result.scores[:N]):.2e}, real {np.median(result.scores[N:]):.2e}); x_T typicality AUROC "
            f"{auroc(-atypical[:N], -atypical[N:]):.3f}; {time.perf_counter() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
