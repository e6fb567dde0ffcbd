"""``dcgan`` and ``dcgan-twin``: a small DCGAN (transposed convolutions, BatchNorm, tanh output), z ∈ R^64.

Generator: z [64] → ConvT 7×7 → 128×7×7 → ConvT 4/2 → 64×14×14 → ConvT 4/2 → 1×28×28, tanh.
Discriminator: Conv 4/2 → 64×14×14 → Conv 4/2 + BN → 128×7×7 → Conv 7×7 → logit.
Non-saturating GAN loss, Adam(2e-4, β = (0.5, 0.999)), batch 64. The shipped generator is the exponential
moving average of the generator's weights (decay 0.999; Yazıcı et al. 2019 — sharper samples than the last
iterate); its BatchNorm statistics are then re-estimated (cumulative average over many batches of random z)
and it is used in eval mode, so decode(z) is a fixed, per-sample function of z. ``dcgan-twin`` is the same recipe
with another seed: same architecture, same data, different weights — the hardest case for verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from imgorigin.runtime import resolve_device
from imgorigin.zoo.common import (
    EMA,
    Log,
    Timer,
    count_parameters,
    default_log,
    gan_generator,
    load_training_images,
    load_weights,
    minibatches,
    save_weights,
    seed_everything,
)

FAMILY = "GAN (DCGAN)"


@dataclass(frozen=True)
class DCGANConfig:
    name: str = "dcgan"
    seed: int = 0
    latent_dim: int = 64
    width: int = 64
    steps: int = 2500
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    ema_decay: float = 0.999
    bn_recalibration_batches: int = 50


class DCGANGenerator(nn.Module):
    def __init__(self, latent_dim: int = 64, width: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 2 * width, 7, 1, 0, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
            nn.ConvTranspose2d(width, 1, 4, 2, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * width, 1, 7, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def dcgan_init(m: nn.Module) -> None:
    """The DCGAN paper's initialisation: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


@torch.no_grad()
def recalibrate_batchnorm(
    gen: nn.Module, latent_dim: int, batches: int, batch_size: int, rng: torch.Generator, device: torch.device
) -> None:
    """Replace BatchNorm running statistics by their exact average over ``batches`` batches of prior z."""
    bns = [m for m in gen.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    gen.train()
    for _ in range(batches):
        gen(torch.randn((batch_size, latent_dim), generator=rng).to(device))
    for bn in bns:
        bn.momentum = 0.1
    gen.eval()


def train(
    cfg: DCGANConfig,
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
    g = DCGANGenerator(cfg.latent_dim, cfg.width)
    d = DCGANDiscriminator(cfg.width)
    g.apply(dcgan_init)
    d.apply(dcgan_init)
    g.to(device).train()
    d.to(device).train()
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=tuple(cfg.betas))
    steps = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    ema = EMA(g, cfg.ema_decay)
    batches = minibatches(data, cfg.batch_size, rng, device)
    timer = Timer()
    for step in range(steps):
        real = next(batches)
        z = torch.randn((real.shape[0], cfg.latent_dim), generator=rng).to(device)
        fake = g(z)
        logit_real, logit_fake = d(real), d(fake.detach())
        loss_d = F.softplus(-logit_real).mean() + F.softplus(logit_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = F.softplus(-d(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        ema.update(g)
        if step % 100 == 0 or step == steps - 1:
            log(
                f"[{cfg.name}] step {step + 1}/{steps} loss_d {loss_d.item():.3f} loss_g {loss_g.item():.3f} "
                f"{timer.seconds:.0f}s"
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
        "epochs": steps * cfg.batch_size / data.shape[0],
        "seconds": seconds,
        "parameters": count_parameters(g),
        "discriminator_parameters": count_parameters(d),
        "device": str(device),
    }


def weight_files(cfg: DCGANConfig) -> list[str]:
    return [f"{cfg.name}/generator.safetensors"]


def load_module(cfg: DCGANConfig, weights_dir: Path, device: str | torch.device = "cpu") -> DCGANGenerator:
    path = Path(weights_dir) / cfg.name / "generator.safetensors"
    return load_weights(DCGANGenerator(cfg.latent_dim, cfg.width), path, device)


def load(cfg: DCGANConfig, weights_dir: Path, device: str | torch.device = "cpu"):
    return gan_generator(load_module(cfg, weights_dir, device), cfg.latent_dim, cfg.name, device)
