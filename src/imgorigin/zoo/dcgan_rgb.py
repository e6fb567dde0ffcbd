"""``dcgan-rgb``: the colour zoo's GAN — the DCGAN of Radford et al. as the PyTorch tutorial builds it, 64×64 RGB.

Generator: z [100, 1, 1] → ConvT 4×4 → 512×4×4 → ConvT 4/2 ×3 → 256×8×8, 128×16×16, 64×32×32 (BatchNorm, ReLU) →
ConvT 4/2 → 3×64×64, tanh: 3.58 M parameters, the layout of most pretrained DCGANs users have. Trained on random
crops of the training photos (:mod:`imgorigin.zoo.photos`) with the recipe of ``dcgan`` (non-saturating loss,
Adam 2e-4 / (0.5, 0.999), EMA generator, BatchNorm statistics re-estimated, eval mode). The weights ship in
float16 (7 MB; the model is those rounded weights, run in float32). Training: :mod:`imgorigin.zoo.training.dcgan_rgb`.
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

FAMILY = "GAN (DCGAN, colour)"


@dataclass(frozen=True)
class DCGANRGBConfig:
    """The recipe's architecture and training hyper-parameters (recorded in the model card)."""

    name: str = "dcgan-rgb"
    seed: int = 0
    latent_dim: int = 100
    width: int = 64
    image_size: int = 64
    training_crops: int = 20_000
    steps: int = 1200
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    ema_decay: float = 0.995
    bn_recalibration_batches: int = 20


class DCGANRGBGenerator(nn.Module):
    """z ``[B, latent_dim]`` (or ``[B, latent_dim, 1, 1]``) → image ``[B, 3, 64, 64]`` in [-1, 1] (tanh)."""

    def __init__(self, latent_dim: int = 100, width: int = 64) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, 8 * width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(8 * width),
            nn.ReLU(True),
        ]
        for mult in (8, 4, 2):
            layers += [
                nn.ConvTranspose2d(mult * width, mult * width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(mult * width // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(width, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim, 1, 1))


def weight_files(cfg: DCGANRGBConfig) -> list[str]:
    """The generator's weight file, relative to a weights folder."""
    return [f"{cfg.name}/generator.safetensors"]


def load_module(cfg: DCGANRGBConfig, weights_dir: Path, device: str | torch.device = "cpu") -> DCGANRGBGenerator:
    """The bare generator module with its weights, in eval mode on ``device``."""
    path = Path(weights_dir) / cfg.name / "generator.safetensors"
    return load_weights(DCGANRGBGenerator(cfg.latent_dim, cfg.width), path, device)


def load(cfg: DCGANRGBConfig, weights_dir: Path, device: str | torch.device = "cpu") -> ModuleGenerator:
    """The generator as verification inverts it: z ~ N(0, I) → tanh image, mapped to [0, 1]."""
    return gan_generator(load_module(cfg, weights_dir, device), cfg.latent_dim, cfg.name, device)
