"""``wgangp``: a GAN with another architecture than ``dcgan``, trained with WGAN-GP.

Generator: z [64] → Linear + BN + ReLU → 64×7×7 → (nearest ×2, Conv 3×3, BN, ReLU) → 32×14×14 →
(nearest ×2, Conv 3×3, BN, ReLU) → 16×28×28 → Conv 3×3 → 1×28×28, tanh.
Critic (no normalisation, as WGAN-GP requires): Conv 4/2 → 48×14×14 → Conv 4/2 → 96×7×7 → Linear → score.
Wasserstein loss with gradient penalty λ = 10 on random interpolates, ``n_critic`` critic steps per generator
step, Adam(lr 5e-4, β = (0, 0.9)). The shipped generator is the EMA of the generator weights (decay 0.995), with
BatchNorm statistics re-estimated after training; eval-mode generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

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
from imgorigin.zoo.dcgan import recalibrate_batchnorm

FAMILY = "GAN (WGAN-GP)"


@dataclass(frozen=True)
class WGANGPConfig:
    name: str = "wgangp"
    seed: int = 1
    latent_dim: int = 64
    width: int = 64
    critic_width: int = 48
    steps: int = 1500  # generator steps
    n_critic: int = 3
    batch_size: int = 64
    lr: float = 5e-4
    lr_critic: float = 5e-4
    betas: tuple[float, float] = (0.0, 0.9)
    gp_weight: float = 10.0
    ema_decay: float = 0.995
    bn_recalibration_batches: int = 50


class WGANGenerator(nn.Module):
    def __init__(self, latent_dim: int = 64, width: int = 96) -> None:
        super().__init__()
        self.latent_dim, self.width = latent_dim, width
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, width * 49, bias=False), nn.BatchNorm1d(width * 49), nn.ReLU(True)
        )
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, width // 2, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width // 2),
            nn.ReLU(True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width // 2, width // 4, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width // 4),
            nn.ReLU(True),
            nn.Conv2d(width // 4, 1, 3, 1, 1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z.reshape(z.shape[0], self.latent_dim)).reshape(z.shape[0], self.width, 7, 7)
        return self.net(h)


class WGANCritic(nn.Module):
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


def weight_files(cfg: WGANGPConfig) -> list[str]:
    return [f"{cfg.name}/generator.safetensors"]


def load_module(cfg: WGANGPConfig, weights_dir: Path, device: str | torch.device = "cpu") -> WGANGenerator:
    path = Path(weights_dir) / cfg.name / "generator.safetensors"
    return load_weights(WGANGenerator(cfg.latent_dim, cfg.width), path, device)


def load(cfg: WGANGPConfig, weights_dir: Path, device: str | torch.device = "cpu"):
    return gan_generator(load_module(cfg, weights_dir, device), cfg.latent_dim, cfg.name, device)
