"""Training of ``dcgan-rgb``: the ``dcgan`` loop on random crops of the training photos."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from imgorigin.runtime import resolve_device
from imgorigin.zoo.dcgan_rgb import DCGANRGBConfig, DCGANRGBGenerator
from imgorigin.zoo.training.common import Log, default_log, load_training_images, save_weights, seed_everything
from imgorigin.zoo.training.dcgan import train_gan


class DCGANRGBDiscriminator(nn.Module):
    """Image ``[B, 3, 64, 64]`` in [-1, 1] → real/fake logit ``[B]``: the tutorial's mirror of the generator."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for mult in (1, 2, 4):
            layers += [
                nn.Conv2d(mult * width, 2 * mult * width, 4, 2, 1, bias=False),
                nn.BatchNorm2d(2 * mult * width),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(8 * width, 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def train(
    cfg: DCGANRGBConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    images: torch.Tensor | None = None,
    max_steps: int | None = None,
    log: Log = default_log,
) -> dict:
    """Train the recipe on ``cfg.training_crops`` photo crops (or ``images``, ``[N, 3, 64, 64]`` in [0, 1]);
    writes ``out_dir / NAME / generator.safetensors``; returns training stats."""
    device = resolve_device(device)
    rng = seed_everything(cfg.seed)
    data = load_training_images(images, cfg)
    steps = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    g_ema, stats = train_gan(
        cfg,
        DCGANRGBGenerator(cfg.latent_dim, cfg.width),
        DCGANRGBDiscriminator(cfg.width),
        data * 2 - 1,
        device,
        rng,
        steps,
        log,
    )
    root = Path(out_dir) / cfg.name
    root.mkdir(parents=True, exist_ok=True)
    save_weights(g_ema, root / "generator.safetensors", half=True)
    return stats
