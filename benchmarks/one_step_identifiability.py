"""Probe: with an exact optimiser, does reconstruction through ``ddpm-one-step`` still tell its images apart?

The student maps 784 noise values to 784 pixels. This probe measures, on a few images:

1. the singular values of the decode Jacobian (d image / d noise, autograd) at members' own noise: how many noise
   directions move the image at all;
2. Levenberg–Marquardt on the exact Jacobian (``LM_ITERATIONS`` iterations) from a member's own noise plus Gaussian
   noise of ``sigma`` sd: how close a start must be for the best possible local optimiser;
3. the same Levenberg–Marquardt on real Fashion-MNIST test images (the shipped subset) and on members, each started
   where the engine's best inversion (Adam + matrix-free Gauss-Newton, ``refine_cg_steps=20``) ended: whether a real
   image can be fitted down to where members are.

Run: ``python benchmarks/one_step_identifiability.py [--n 3]`` (at most 16 min on 2 CPU cores with ``--n 3``; each
exact Jacobian costs ~7.5 s, a backward pass per pixel).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from imgorigin import zoo
from imgorigin.images import quantize_8bit
from imgorigin.verification.inversion import InversionConfig, Inverter
from imgorigin.zoo.data import subset_images

SIGMAS = (0.2, 0.5, 1.0)
LM_ITERATIONS = 8


def levenberg_marquardt(generator, image: torch.Tensor, start: torch.Tensor, iterations: int = LM_ITERATIONS) -> float:
    """Best MSE reached on one image by damped Gauss-Newton on the exact (autograd) Jacobian, from ``start``."""

    def residual(z: torch.Tensor) -> torch.Tensor:
        return (generator.decode(z.view(1, *generator.latent_shape)) - image[None]).flatten()

    z = start.flatten().clone()
    damping = 1e-3
    with torch.no_grad():
        loss = residual(z).pow(2).mean().item()
    jac = None
    for _ in range(iterations):
        if jac is None:  # measured only where z moved: a rejected step changes the damping, not the Jacobian
            jac = torch.func.jacrev(residual)(z)
            with torch.no_grad():
                gram, gradient = jac.T @ jac, jac.T @ residual(z)
        with torch.no_grad():
            step = torch.linalg.solve(gram + damping * torch.eye(z.numel()), gradient)
            trial = residual(z - step).pow(2).mean().item()
        if trial < loss:
            z, loss, damping, jac = z - step, trial, damping / 3, None
        else:
            damping *= 5
    return loss


def spread(values: list[float]) -> str:
    """Median and range of a few losses."""
    return f"median {np.median(values):.2e} [{min(values):.1e}, {max(values):.1e}]"


def main() -> None:
    """Print the spectrum, the LM basin and the LM fits of members and real images."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2, help="images per set")
    args = ap.parse_args()
    # autograd's batched Jacobian falls back to a per-row loop for CPU attention and says so once per call
    warnings.filterwarnings("ignore", message="There is a performance drop")
    torch.manual_seed(0)
    gen = zoo.load("ddpm-one-step")
    rng = torch.Generator().manual_seed(2000)
    noise = gen.sample_latents(args.n, rng)
    with torch.no_grad():
        members = quantize_8bit(gen.decode(noise))
    real = subset_images()[::7][: args.n]

    began = time.perf_counter()
    values = []
    for z in noise:
        jac = torch.func.jacrev(lambda v: gen.decode(v.view(1, *gen.latent_shape)).flatten())(z.flatten())
        values.append(torch.linalg.svdvals(jac).numpy())
    s = np.concatenate(values)
    print(
        f"Jacobian singular values at {args.n} members' noise (784 each): max {s.max():.2f}, median "
        f"{np.median(s):.3f}, 10th percentile {np.quantile(s, 0.1):.3f}; share below 1e-3: "
        f"{np.mean(s < 1e-3):.1%} ({time.perf_counter() - began:.0f} s)",
        flush=True,
    )
    for sigma in SIGMAS:
        began = time.perf_counter()
        losses = [
            levenberg_marquardt(gen, x, z + sigma * torch.randn(z.shape, generator=rng))
            for x, z in zip(members, noise, strict=True)
        ]
        print(f"members, LM from own noise + {sigma} sd: {spread(losses)} ({time.perf_counter() - began:.0f} s)")

    config = InversionConfig(refine_cg_steps=20)
    for name, images in (("members", members), ("real test images", real)):
        began = time.perf_counter()
        engine = Inverter(gen, config)(images, return_latents=True)
        losses = [levenberg_marquardt(gen, x, z) for x, z in zip(images, engine.latents, strict=True)]
        print(
            f"{name}: engine {spread(engine.scores.tolist())}, then LM {spread(losses)} "
            f"({time.perf_counter() - began:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
