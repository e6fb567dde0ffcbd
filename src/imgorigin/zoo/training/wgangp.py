"""Training of ``wgangp``: Wasserstein loss with gradient penalty, EMA generator, BatchNorm re-estimated."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from imgorigin.runtime import resolve_device
from imgorigin.zoo.training.common import (
    EMA,
    Log,
    Timer,
    count_parameters,
    default_log,
    load_training_images,
    minibatches,
    save_weights,
    seed_everything,
)
from imgorigin.zoo.training.dcgan import recalibrate_batchnorm
from imgorigin.zoo.wgangp import WGANGenerator, WGANGPConfig


class WGANCritic(nn.Module):
    """Image ``[B, 1, 28, 28]`` in [-1, 1] → critic score ``[B]`` (training only, not shipped)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Flatten(),
            nn.Linear(2 * width * 49, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """WGAN-GP penalty: (‖∇ critic‖ − 1)² at random interpolates of real and fake images."""
    eps = torch.rand((real.shape[0], 1, 1, 1), generator=rng).to(real.device)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def train(
    cfg: WGANGPConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    images: torch.Tensor | None = None,
    max_steps: int | None = None,
    log: Log = default_log,
) -> dict:
    """Train the recipe; writes ``out_dir / NAME / generator.safetensors``; returns training stats."""

    device = resolve_device(device)
    rng = seed_everything(cfg.seed)
    data = load_training_images(images) * 2 - 1
    g = WGANGenerator(cfg.latent_dim, cfg.width).to(device).train()
    c = WGANCritic(cfg.critic_width).to(device).train()
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    opt_c = torch.optim.Adam(c.parameters(), lr=cfg.lr_critic, betas=tuple(cfg.betas))
    steps = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    ema = EMA(g, cfg.ema_decay)
    batches = minibatches(data, cfg.batch_size, rng, device)
    timer = Timer()
    for step in range(steps):
        for _ in range(cfg.n_critic):
            real = next(batches)
            with torch.no_grad():
                fake = g(torch.randn((real.shape[0], cfg.latent_dim), generator=rng).to(device))
            wdist = c(real).mean() - c(fake).mean()
            gp = gradient_penalty(c, real, fake, rng)
            loss_c = -wdist + cfg.gp_weight * gp
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
        fake = g(torch.randn((cfg.batch_size, cfg.latent_dim), generator=rng).to(device))
        loss_g = -c(fake).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        ema.update(g)
        if step % 100 == 0 or step == steps - 1:
            log(
                f"[{cfg.name}] step {step + 1}/{steps} W {wdist.item():.3f} gp {gp.item():.3f} "
                f"loss_g {loss_g.item():.3f} {timer.seconds:.0f}s"
            )
    g_ema = ema.module
    recalibrate_batchnorm(g_ema, cfg.latent_dim, cfg.bn_recalibration_batches, 256, rng, device)
    seconds = timer.seconds
    root = Path(out_dir) / cfg.name
    root.mkdir(parents=True, exist_ok=True)
    g_ema.to("cpu")
    save_weights(g_ema, root / "generator.safetensors")
    return {
        "steps": steps,
        "critic_steps": steps * cfg.n_critic,
        "epochs": steps * cfg.n_critic * cfg.batch_size / data.shape[0],
        "seconds": seconds,
        "parameters": count_parameters(g),
        "critic_parameters": count_parameters(c),
        "device": str(device),
    }
