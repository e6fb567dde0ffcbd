"""Probe: how close to a member's own noise must the inversion of ``ddpm-one-step`` start to find it again?

For N fresh samples of the zoo's one-step model (seed 2000, 8-bit), Adam (lr 0.02, 300 steps) minimises the
reconstruction MSE starting from the member's true input noise plus Gaussian noise of each standard deviation
``sigma`` (0 = the true noise), and prints the median and range of the best MSE reached and the RMS distance of the
end point from the true noise. A random start is sigma ≈ 1.41 away (two independent N(0, I) draws). It measures the
basin of attraction that any start (search, learned initialiser, retries) has to land in.

Run: ``python benchmarks/one_step_basin.py [--n 8]`` (about 2 min on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from imgorigin import zoo
from imgorigin.images import clipped_fraction, quantize_8bit

SIGMAS = (0.0, 0.05, 0.2, 0.5, 1.0)


def best_mse(
    generator, images: torch.Tensor, start: torch.Tensor, steps: int, lr: float
) -> tuple[np.ndarray, torch.Tensor]:
    """Best MSE per image over ``steps`` Adam steps from ``start`` (the engine's Inverter takes no given starts),
    and the end latents."""
    z = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    best = torch.full((len(images),), float("inf"))
    for _ in range(steps):
        loss = (generator.decode(z) - images).pow(2).flatten(1).mean(1)
        best = torch.minimum(best, loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    return best.numpy(), z.detach()


def main() -> None:
    """Print one line per starting distance."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8, help="members probed")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=0.02)
    args = ap.parse_args()
    gen = zoo.load("ddpm-one-step")
    rng = torch.Generator().manual_seed(2000)
    noise = gen.sample_latents(args.n, rng)
    with torch.no_grad():
        members = quantize_8bit(gen.decode(noise))
    saturated = clipped_fraction(members).mean().item()
    print(f"{args.n} members of zoo:ddpm-one-step, {100 * saturated:.1f} % of pixels at 0 or 255")
    for sigma in SIGMAS:
        start = noise + sigma * torch.randn(noise.shape, generator=rng)
        began = time.perf_counter()
        best, end = best_mse(gen, members, start, args.steps, args.lr)
        distance = (end - noise).pow(2).flatten(1).mean(1).sqrt().mean().item()
        print(
            f"start sigma {sigma:4.2f}: best MSE median {np.median(best):.2e} [{best.min():.1e}, {best.max():.1e}], "
            f"end {distance:.3f} RMS from the true noise ({time.perf_counter() - began:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
