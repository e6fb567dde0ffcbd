"""``wgangp``: a GAN with another architecture than ``dcgan``, trained with WGAN-GP.

Generator: z [64] → Linear + BN + ReLU → 64×7×7 → (nearest ×2, Conv 3×3, BN, ReLU) → 32×14×14 →
(nearest ×2, Conv 3×3, BN, ReLU) → 16×28×28 → Conv 3×3 → 1×28×28, tanh.
Critic (no normalisation, as WGAN-GP requires): Conv 4/2 → 48×14×14 → Conv 4/2 → 96×7×7 → Linear → score.
Wasserstein loss with gradient penalty λ = 10 on random interpolates, ``n_critic`` critic steps per generator
step, Adam(lr 5e-4, β = (0, 0.9)). The shipped generator is the EMA of the generator weights (decay 0.995), with
BatchNorm statistics re-estimated after training; eval-mode generator.
Training (critic, gradient penalty, EMA): :mod:`imgorigin.zoo.training.wgangp`.
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

FAMILY = "GAN (WGAN-GP)"


@dataclass(frozen=True)
class WGANGPConfig:
    """The recipe's architecture and training hyper-parameters (recorded in the model card)."""

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
    """z ``[B, latent_dim]`` → image ``[B, 1, 28, 28]`` in [-1, 1] (tanh)."""

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


def weight_files(cfg: WGANGPConfig) -> list[str]:
    """The generator's weight file, relative to a weights folder."""
    return [f"{cfg.name}/generator.safetensors"]


def load_module(cfg: WGANGPConfig, weights_dir: Path, device: str | torch.device = "cpu") -> WGANGenerator:
    """The bare generator module with its weights, in eval mode on ``device``."""
    path = Path(weights_dir) / cfg.name / "generator.safetensors"
    return load_weights(WGANGenerator(cfg.latent_dim, cfg.width), path, device)


def load(cfg: WGANGPConfig, weights_dir: Path, device: str | torch.device = "cpu") -> ModuleGenerator:
    """The generator as verification inverts it: z ~ N(0, I) → tanh image, mapped to [0, 1]."""
    return gan_generator(load_module(cfg, weights_dir, device), cfg.latent_dim, cfg.name, device)
