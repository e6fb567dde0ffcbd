"""Training of ``dcgan`` and ``dcgan-twin``: non-saturating GAN loss, EMA generator, BatchNorm re-estimated."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from imgorigin.runtime import resolve_device
from imgorigin.zoo.dcgan import DCGANConfig, DCGANGenerator
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


class DCGANDiscriminator(nn.Module):
    """Image ``[B, 1, 28, 28]`` in [-1, 1] → real/fake logit ``[B]`` (training only, not shipped)."""

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


def train_gan(
    cfg,
    g: nn.Module,
    d: nn.Module,
    data: torch.Tensor,
    device: torch.device,
    rng: torch.Generator,
    steps: int,
    log: Log,
) -> tuple[nn.Module, dict]:
    """The DCGAN recipe's loop (shared by ``dcgan`` and ``dcgan-rgb``): non-saturating loss, Adam, EMA generator
    with BatchNorm statistics re-estimated. ``data`` in [-1, 1]; returns the EMA generator (CPU) and stats."""
    g.apply(dcgan_init)
    d.apply(dcgan_init)
    g.to(device).train()
    d.to(device).train()
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr_g, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr_d, betas=tuple(cfg.betas))
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
    stats = {
        "steps": steps,
        "epochs": steps * cfg.batch_size / data.shape[0],
        "seconds": timer.seconds,
        "parameters": count_parameters(g),
        "discriminator_parameters": count_parameters(d),
        "device": str(device),
    }
    return g_ema.to("cpu"), stats


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
    steps = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    g_ema, stats = train_gan(
        cfg, DCGANGenerator(cfg.latent_dim, cfg.width), DCGANDiscriminator(cfg.width), data, device, rng, steps, log
    )
    root = Path(out_dir) / cfg.name
    root.mkdir(parents=True, exist_ok=True)
    save_weights(g_ema, root / "generator.safetensors")
    return stats
