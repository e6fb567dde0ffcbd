"""Probe: does inverting the input noise of the zoo's one-step model (ddpm-one-step) tell its images apart?

Inverts 16 fresh samples of ddpm-one-step (seed 2000), 16 Fashion-MNIST test images (the shipped subset) and 16
samples of its teacher ddpm (seed 2000) with the default inversion (Adam) and with the matrix-free Gauss-Newton
refinement (``refine_cg_steps``), and prints the median and range of each set's best MSE, the AUROC of members
against each other set and the seconds per image. Run: ``python benchmarks/one_step_probe.py`` (about 10 min on
2 CPU cores).
"""

from __future__ import annotations

import time

import numpy as np

from imgorigin import zoo
from imgorigin.images import quantize_8bit
from imgorigin.metrics import auroc
from imgorigin.verification.inversion import InversionConfig, Inverter
from imgorigin.zoo.data import subset_images

N = 16
CONFIGS = {"adam (defaults)": InversionConfig(), "adam + matrix-free LM": InversionConfig(refine_cg_steps=20)}


def main() -> None:
    """Print one line per inversion setting and image set."""
    gen = zoo.load("ddpm-one-step")
    sets = {
        "members": quantize_8bit(gen.sample(N, seed=2000)),
        "real (Fashion-MNIST test)": subset_images()[::7][:N],
        "teacher ddpm samples": quantize_8bit(zoo.sample("ddpm", N, seed=2000)),
    }
    for label, config in CONFIGS.items():
        scores = {}
        for name, images in sets.items():
            start = time.perf_counter()
            scores[name] = Inverter(gen, config)(images).scores
            seconds = (time.perf_counter() - start) / N
            s = scores[name]
            spread = f"median {np.median(s):.2e} [{s.min():.1e}, {s.max():.1e}]"
            print(f"{label:24s} {name:26s} {spread} {seconds:.2f} s/img")
        for name in list(sets)[1:]:
            # low score = member: AUROC of members (positives) against the other set, on negated scores
            print(f"{label:24s} AUROC members vs {name}: {auroc(-scores['members'], -scores[name]):.3f}", flush=True)


if __name__ == "__main__":
    main()
