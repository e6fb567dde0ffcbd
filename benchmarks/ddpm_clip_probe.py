"""Probe of issue 16: why do zoo:ddpm's own samples reconstruct worse than real images?

Hypothesis tested: the shipped scheduler clips the predicted x_0 to [-1, 1] at every DDIM step; at t = 999
(ᾱ ≈ 4e-5) the x_0 prediction is amplified ~160× and most pixels are clipped, so the gradient through them
is zero and the DDIM-inversion encoder (which ignores the clip) starts away from a member's true x_T.

Measured, on ``--members`` own samples (x_T drawn with ``--seed``, 8-bit quantised) and ``--real`` Fashion-MNIST
test images, for four samplers of the same weights: clipped chain with exact gradient (as shipped), clipped
chain with a straight-through gradient, unclipped chain (members re-sampled from it) with plain DDIM
inversion, and unclipped with fixed-point DDIM inversion:

(a) fraction of pixels whose x_0 prediction is clipped at each step of the members' chains;
(b) best MSE after a fixed inversion budget (encoder start, 1 restart, Adam), members vs real, AUROC;
(c) from the TRUE x_T of each member, and from x_T + noise: best MSE and final latent distance (plain Adam);
(d) encoder start vs the true x_T (cosine, MSE) and the encoder start's own reconstruction MSE.

Usage: nice -n 10 python benchmarks/ddpm_clip_probe.py --out runs/ddpm_clip_probe.json   (one CPU thread)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from imgorigin import zoo
from imgorigin.images import quantize_8bit
from imgorigin.metrics import auroc
from imgorigin.verification.generators.ddim import DDIMGenerator
from imgorigin.verification.inversion import InversionConfig, invert
from imgorigin.zoo import data


def per_image_mse(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return (a - b).pow(2).flatten(1).mean(1).numpy()


@torch.no_grad()
def clip_fractions(gen: DDIMGenerator, z: torch.Tensor) -> list[float]:
    """Fraction of pixels with |x_0 prediction| > clip range at each step of the chain from ``z``."""
    alphas = gen.scheduler.alphas_cumprod.float()
    out, x = [], z
    for t in gen.timesteps:
        eps = gen.unet(x, t).sample
        x0 = (x - (1 - alphas[t]).sqrt() * eps) / alphas[t].sqrt()
        out.append(float((x0.abs() > float(gen.scheduler.config.clip_sample_range)).float().mean()))
        x = gen.step(eps, t, x)
    return out


def adam_from(gen: DDIMGenerator, start: torch.Tensor, target: torch.Tensor, steps: int, lr: float):
    """Plain Adam on MSE from ``start``: (best MSE per row, MSE at the end, latent at the end)."""
    z = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    best = np.full(len(z), np.inf)
    for _ in range(steps):
        loss = (gen.decode(z) - target).pow(2).flatten(1).mean(1)
        best = np.minimum(best, loss.detach().numpy())
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        final = per_image_mse(gen.decode(z), target)
    return np.minimum(best, final), final, z.detach()


def med(x) -> float:
    return float(np.median(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--real", type=int, default=10)
    parser.add_argument("--seed", type=int, default=31, help="seed of the members' x_T")
    parser.add_argument("--real-offset", type=int, default=5000, help="first Fashion-MNIST test image used")
    parser.add_argument("--steps", type=int, default=40, help="Adam steps of the inversion budget (b)")
    parser.add_argument("--true-steps", type=int, default=25, help="Adam steps from the true x_T (c)")
    parser.add_argument("--fixed-point", type=int, default=10, help="fixed-point iterations of the exact encoder")
    parser.add_argument("--noise", type=float, default=0.1, help="std of the noise added to the true x_T (c)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.perf_counter()

    base = zoo.load("ddpm")
    unet, scheduler = base.unet, base.scheduler
    steps = base.num_inference_steps
    variants = {
        "clip/exact": base,
        "clip/straight-through": DDIMGenerator(unet, scheduler, steps, clip_gradient="straight_through"),
        "noclip/ddim-inv": DDIMGenerator(unet, scheduler, steps, clip_sample=False),
        f"noclip/fixed-point{args.fixed_point}": DDIMGenerator(
            unet, scheduler, steps, clip_sample=False, encoder_iterations=args.fixed_point
        ),
    }
    z_true = torch.randn((args.members, *base.latent_shape), generator=torch.Generator().manual_seed(args.seed))
    real = data.test_images()[args.real_offset : args.real_offset + args.real]
    with torch.no_grad():
        members = {
            clip: quantize_8bit(variants[name].decode(z_true))
            for clip, name in (("clip", "clip/exact"), ("noclip", "noclip/ddim-inv"))
        }
    results: dict = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "timesteps": base.timesteps,
        "variants": {},
    }

    # (a) clipping per step, members' chains of the shipped sampler
    results["clip_fraction_per_step"] = dict(zip(map(str, base.timesteps), clip_fractions(base, z_true), strict=True))
    print("(a) fraction of pixels with |x0_pred| > 1, shipped (clipped) chain of the members:")
    print("| t | " + " | ".join(map(str, base.timesteps)) + " |")
    print("|---|" + "---|" * len(base.timesteps))
    print(
        "| clipped | " + " | ".join(f"{v:.3f}" for v in results["clip_fraction_per_step"].values()) + " |\n", flush=True
    )

    config = InversionConfig(
        steps=args.steps, restarts=1, init="encoder", prune_after=0, patience=args.steps, refine_steps=0
    )
    rows = []
    for name, gen in variants.items():
        clock = time.perf_counter()
        mem = members[name.split("/")[0]]
        record: dict = {"sampler": gen.sampler}
        # (d) encoder start
        with torch.no_grad():
            z_enc = gen.encode(mem)
            record["encoder_cos_to_true"] = F.cosine_similarity(z_enc.flatten(1), z_true.flatten(1)).tolist()
            record["encoder_latent_mse_to_true"] = per_image_mse(z_enc, z_true).tolist()
            record["encoder_recon_members"] = per_image_mse(gen.decode(z_enc), mem).tolist()
            record["encoder_recon_real"] = per_image_mse(gen.decode(gen.encode(real)), real).tolist()
            record["true_xT_recon_members"] = per_image_mse(gen.decode(z_true), mem).tolist()
        # (b) fixed inversion budget
        result = invert(gen, torch.cat([mem, real]), config)
        s_mem, s_real = result.scores[: len(mem)], result.scores[len(mem) :]
        record.update(
            best_mse_members=s_mem.tolist(), best_mse_real=s_real.tolist(), auroc=float(auroc(-s_mem, -s_real))
        )
        # (c) from the true x_T and from x_T + noise, two learning rates
        noise = args.noise * torch.randn(z_true.shape, generator=torch.Generator().manual_seed(args.seed + 1))
        for lr in (0.2, 0.02):
            starts = torch.cat([z_true, z_true + noise])
            best, final, z_end = adam_from(gen, starts, torch.cat([mem, mem]), args.true_steps, lr)
            n = len(mem)
            drift = per_image_mse(z_end, torch.cat([z_true, z_true]))
            record[f"from_true_lr{lr}"] = {
                "best_mse": best[:n].tolist(),
                "final_mse": final[:n].tolist(),
                "latent_mse_end": drift[:n].tolist(),
            }
            record[f"from_noisy_lr{lr}"] = {
                "best_mse": best[n:].tolist(),
                "final_mse": final[n:].tolist(),
                "latent_mse_end": drift[n:].tolist(),
                "latent_mse_start": per_image_mse(z_true + noise, z_true).tolist(),
            }
        record["seconds"] = time.perf_counter() - clock
        results["variants"][name] = record
        rows.append((name, record))
        print(f"{name}: done in {record['seconds']:.0f} s", flush=True)

    print("\n(b)-(d) medians (members: own samples of that chain; real: Fashion-MNIST test):")
    print(
        "| sampler | AUROC (b) | best MSE members (b) | best MSE real (b) | enc cos to x_T (d) | enc latent MSE (d) "
        "| enc recon members | enc recon real | x_T start: final MSE lr0.2 (c) | lr0.02 | x_T+noise: best MSE lr0.2 "
        "| lr0.02 | x_T+noise: latent MSE end, lr0.02 |"
    )
    print("|---" * 13 + "|")
    for name, r in rows:
        print(
            f"| {name} | {r['auroc']:.3f} | {med(r['best_mse_members']):.2e} | {med(r['best_mse_real']):.2e} "
            f"| {med(r['encoder_cos_to_true']):.3f} | {med(r['encoder_latent_mse_to_true']):.3f} "
            f"| {med(r['encoder_recon_members']):.2e} | {med(r['encoder_recon_real']):.2e} "
            f"| {med(r['from_true_lr0.2']['final_mse']):.2e} | {med(r['from_true_lr0.02']['final_mse']):.2e} "
            f"| {med(r['from_noisy_lr0.2']['best_mse']):.2e} | {med(r['from_noisy_lr0.02']['best_mse']):.2e} "
            f"| {med(r['from_noisy_lr0.02']['latent_mse_end']):.3f} |"
        )
    results["seconds"] = time.perf_counter() - started
    print(
        f"\nquantisation floor 1.3e-6; noise std {args.noise} (latent MSE at start {args.noise**2:.3f}); "
        f"total {results['seconds']:.0f} s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
