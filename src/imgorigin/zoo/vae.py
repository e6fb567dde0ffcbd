"""``vae`` and ``vae-rgb``: a convolutional VAE; the generator verification inverts is the DECODER (latent z → image).

Encoder: Conv 4/2 → 32×14×14 → Conv 4/2 → 64×7×7 → Linear → (μ, log σ²) ∈ R^16 × R^16.
Decoder: Linear → 64×7×7 → ConvT 4/2 → 64×14×14 → ConvT 4/2 → 32×28×28 → Conv 3×3 → sigmoid (output in [0, 1]).
(Sizes for ``vae``, 28×28 grayscale; ``vae-rgb`` is the same layout for 32×32 RGB photo crops, z ∈ R^64,
float16 weights.)
Loss: Bernoulli log-likelihood (binary cross-entropy summed over pixels) + KL to N(0, I), Adam(1e-3).
The encoder's posterior mean is kept (shipped) for optional initialisation of the inversion.
Training: :mod:`imgorigin.zoo.training.vae`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from imgorigin.zoo.common import load_weights

if TYPE_CHECKING:
    from imgorigin.verification.generators.torch_module import ModuleGenerator

FAMILY = "VAE"


@dataclass(frozen=True)
class VAEConfig:
    """The recipe's architecture and training hyper-parameters (recorded in the model card)."""

    name: str = "vae"
    seed: int = 2
    latent_dim: int = 16
    width: int = 32
    # images: 28×28 grayscale Fashion-MNIST, or (training_crops > 0) colour crops of the training photos
    image_size: int = 28
    channels: int = 1
    training_crops: int = 0
    #: Ship the weights in float16 (half the bytes; the model is those rounded weights, run in float32).
    half: bool = False
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100


class VAEEncoder(nn.Module):
    """x in [0, 1] → (μ, log σ²)."""

    def __init__(self, latent_dim: int = 16, width: int = 32, channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * (image_size // 4) ** 2, 2 * latent_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x).chunk(2, dim=1)
        return mu, logvar


class VAEMeanEncoder(nn.Module):
    """The encoder as an initialiser for inversion: image in [0, 1] → posterior mean μ."""

    def __init__(self, encoder: VAEEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]


class VAEDecoder(nn.Module):
    """z → image in [0, 1] (sigmoid output)."""

    def __init__(self, latent_dim: int = 16, width: int = 32, channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.latent_dim, self.width, self.side = latent_dim, width, image_size // 4
        self.fc = nn.Linear(latent_dim, 2 * width * self.side**2)
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(2 * width, 2 * width, 4, 2, 1),
            nn.SiLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(width, channels, 3, 1, 1),
        )

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z.reshape(z.shape[0], self.latent_dim)).reshape(z.shape[0], 2 * self.width, self.side, self.side)
        return self.net(h)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))


def architecture(cfg: VAEConfig) -> tuple[int, int, int, int]:
    """The encoder's and decoder's constructor arguments: latent size, width, channels, image side."""
    return cfg.latent_dim, cfg.width, cfg.channels, cfg.image_size


def weight_files(cfg: VAEConfig) -> list[str]:
    """The decoder's and the encoder's weight files, relative to a weights folder."""
    return [f"{cfg.name}/decoder.safetensors", f"{cfg.name}/encoder.safetensors"]


def load_modules(
    cfg: VAEConfig, weights_dir: Path, device: str | torch.device = "cpu"
) -> tuple[VAEDecoder, VAEEncoder]:
    """The decoder and encoder modules with their weights, in eval mode on ``device``."""
    root = Path(weights_dir) / cfg.name
    return (
        load_weights(VAEDecoder(*architecture(cfg)), root / "decoder.safetensors", device),
        load_weights(VAEEncoder(*architecture(cfg)), root / "encoder.safetensors", device),
    )


def load(cfg: VAEConfig, weights_dir: Path, device: str | torch.device = "cpu") -> ModuleGenerator:
    """The decoder as verification inverts it, with the encoder's posterior mean as initialiser."""
    from imgorigin.verification.generators.torch_module import ModuleGenerator

    dec, enc = load_modules(cfg, weights_dir, device)
    return ModuleGenerator(
        dec, (cfg.latent_dim,), id=f"zoo:{cfg.name}", output_range="unit", encoder=VAEMeanEncoder(enc)
    ).to(device)
