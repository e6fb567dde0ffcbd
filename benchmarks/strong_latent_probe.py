"""Probe: on the colour zoo's strong autoencoder, how close do the encoder and decoder inversion come to the latent a
member was decoded from, and how well does the UNet's DDIM-inverted x_T tell the two models on it apart?

Draws N samples of ``ldm-rgb-strong`` (A) and of ``ldm-rgb-strong-b`` (B, the same autoencoder, another UNet) with
their latents, and N held-out photo crops (real). For each set it prints the reconstruction MSE of the encoder's
latent and of decoder inversion from it (the zoo's setting: LatentTracer's one start, 100 Adam steps at lr 0.05),
the relative error of both latents against the true one, and the Gaussian atypicality of x_T that fixed-point DDIM
inversion under A's UNet finds from the true, the encoder's and the inverted latent; then the AUROC of A against B
and against real for each.

Run: ``python benchmarks/strong_latent_probe.py [--n 40]`` (about 2 min on 2 CPU cores).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from imgorigin import zoo
from imgorigin.images import clipped_fraction, quantize_8bit
from imgorigin.metrics import auroc
from imgorigin.verification.diffusion import ddim_invert, gaussian_atypicality
from imgorigin.verification.inversion import Inverter
from imgorigin.zoo.calibrations import inversion_config
from imgorigin.zoo.photos import random_crops


def samples_with_latents(gen, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` latents of the model's latent diffusion sampler and their 8-bit decoded images."""
    z = gen.latent_sampler(n, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return z, quantize_8bit(gen.decode(z).clamp(0, 1))


def decoder_inversion(gen, images: torch.Tensor):
    """The encoder's latent, the latent the engine's decoder inversion finds with the zoo's settings for the model
    (what ``bench verify``'s raw score runs), and both MSEs."""
    with torch.no_grad():
        start = gen.encode(images)
        start_mse = (gen.decode(start) - images).pow(2).flatten(1).mean(1).numpy()
    result = Inverter(gen, inversion_config("ldm-rgb-strong"))(images, return_latents=True)
    return start, result.latents, start_mse, result.scores


def relative_error(z: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over images of ‖z − truth‖² / ‖truth‖²."""
    return float(((z - truth).pow(2).flatten(1).sum(1) / truth.pow(2).flatten(1).sum(1)).mean())


def main() -> None:
    """Print the latent errors and AUROCs."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="images per set")
    ap.add_argument("--fixed-point", type=int, default=5, help="fixed-point iterations per DDIM-inversion step")
    args = ap.parse_args()
    a, b = zoo.load("ldm-rgb-strong"), zoo.load("ldm-rgb-strong-b")
    z_a, x_a = samples_with_latents(a, args.n, 5)
    z_b, x_b = samples_with_latents(b, args.n, 5)
    sets = {"A": (z_a, x_a), "B": (z_b, x_b), "real": (None, random_crops("heldout", args.n, 32, seed=3))}
    scores: dict[tuple[str, str], np.ndarray] = {}
    for name, (truth, images) in sets.items():
        saturated = clipped_fraction(images).mean().item()
        start, end, start_mse, end_mse = decoder_inversion(a, images)
        scores[name, "encoder MSE"], scores[name, "inverted MSE"] = start_mse, end_mse
        line = f"{name:5s} {100 * saturated:4.1f} % pixels at 0/255; MSE encoder {np.median(start_mse):.2e}, "
        line += f"inverted {np.median(end_mse):.2e}"
        latents = {"encoder": start, "inverted": end}
        if truth is not None:
            errors = relative_error(start, truth), relative_error(end, truth)
            line += f"; latent error encoder {errors[0]:.3f}, inverted {errors[1]:.3f}"
            latents["true"] = truth
        print(line, flush=True)
        for label, z in latents.items():
            scores[name, f"x_T ({label} z)"] = gaussian_atypicality(ddim_invert(a.latent_sampler, z, args.fixed_point))
    for key in ("x_T (true z)", "x_T (encoder z)", "x_T (inverted z)", "encoder MSE", "inverted MSE"):
        line = f"{key:18s}"
        if ("B", key) in scores:
            line += f" AUROC A vs B {auroc(-scores['A', key], -scores['B', key]):.3f}"
        if ("real", key) in scores:
            line += f"  A vs real {auroc(-scores['A', key], -scores['real', key]):.3f}"
        print(line)


if __name__ == "__main__":
    main()
