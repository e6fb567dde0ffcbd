"""``dcgan`` and ``dcgan-twin``: a small DCGAN (transposed convolutions, BatchNorm, tanh output), z ∈ R^64.

Generator: z [64] → ConvT 7×7 → 128×7×7 → ConvT 4/2 → 64×14×14 → ConvT 4/2 → 1×28×28, tanh.
Discriminator: Conv 4/2 → 64×14×14 → Conv 4/2 + BN → 128×7×7 → Conv 7×7 → logit.
Non-saturating GAN loss, Adam(2e-4, β = (0.5, 0.999)), batch 64. The shipped generator is the exponential
moving average of the generator's weights (decay 0.999; Yazıcı et al. 2019 — sharper samples than the last
iterate); its BatchNorm statistics are then re-estimated (cumulative average over many batches of random z)
and it is used in eval mode, so decode(z) is a fixed, per-sample function of z. ``dcgan-twin`` is the same recipe
with another seed: same architecture, same data, different weights — the hardest case for verification.
Training (discriminator, loss, EMA, BatchNorm re-estimation): :mod:`imgorigin.zoo.training.dcgan`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from imgorigin.zoo.common import gan_generator, load_weights

if TYPE_CHECKING:
    from imgorigin.verification.generators.torch_module import ModuleGenerator

FAMILY = "GAN (DCGAN)"


@dataclass(frozen=True)
class DCGANConfig:
    """The recipe's architecture and training hyper-parameters (recorded in the model card)."""

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
    """z ``[B, latent_dim]`` → image ``[B, 1, 28, 28]`` in [-1, 1] (tanh)."""

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


def weight_files(cfg: DCGANConfig) -> list[str]:
    """The generator's weight file, relative to a weights folder."""
    return [f"{cfg.name}/generator.safetensors"]


def load_module(cfg: DCGANConfig, weights_dir: Path, device: str | torch.device = "cpu") -> DCGANGenerator:
    """The bare generator module with its weights, in eval mode on ``device``."""
    path = Path(weights_dir) / cfg.name / "generator.safetensors"
    return load_weights(DCGANGenerator(cfg.latent_dim, cfg.width), path, device)


def load(cfg: DCGANConfig, weights_dir: Path, device: str | torch.device = "cpu") -> ModuleGenerator:
    """The generator as verification inverts it: z ~ N(0, I) → tanh image, mapped to [0, 1]."""
    return gan_generator(load_module(cfg, weights_dir, device), cfg.latent_dim, cfg.name, device)
