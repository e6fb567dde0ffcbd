"""``vae``: a convolutional VAE; the generator verification inverts is the DECODER (latent z ∈ R^16 → image).

Encoder: Conv 4/2 → 32×14×14 → Conv 4/2 → 64×7×7 → Linear → (μ, log σ²) ∈ R^16 × R^16.
Decoder: Linear → 64×7×7 → ConvT 4/2 → 64×14×14 → ConvT 4/2 → 32×28×28 → Conv 3×3 → sigmoid (output in [0, 1]).
Loss: Bernoulli log-likelihood (binary cross-entropy summed over pixels) + KL to N(0, I), Adam(1e-3).
The encoder's posterior mean is kept (shipped) for optional initialisation of the inversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from imgorigin.runtime import resolve_device
from imgorigin.zoo.common import (
    Log,
    Timer,
    count_parameters,
    default_log,
    load_training_images,
    load_weights,
    minibatches,
    save_weights,
    seed_everything,
    warmup_cosine,
)

FAMILY = "VAE"


@dataclass(frozen=True)
class VAEConfig:
    name: str = "vae"
    seed: int = 2
    latent_dim: int = 16
    width: int = 32
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100


class VAEEncoder(nn.Module):
    """x in [0, 1] → (μ, log σ²)."""

    def __init__(self, latent_dim: int = 16, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * 49, 2 * latent_dim),
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

    def __init__(self, latent_dim: int = 16, width: int = 32) -> None:
        super().__init__()
        self.latent_dim, self.width = latent_dim, width
        self.fc = nn.Linear(latent_dim, 2 * width * 49)
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(2 * width, 2 * width, 4, 2, 1),
            nn.SiLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.SiLU(),
            nn.Conv2d(width, 1, 3, 1, 1),
        )

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z.reshape(z.shape[0], self.latent_dim)).reshape(z.shape[0], 2 * self.width, 7, 7)
        return self.net(h)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))


def train(
    cfg: VAEConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    images: torch.Tensor | None = None,
    max_steps: int | None = None,
    log: Log = default_log,
) -> dict:
    """Train the recipe; writes ``decoder.safetensors`` and ``encoder.safetensors`` under ``out_dir / NAME``."""

    device = resolve_device(device)
    rng = seed_everything(cfg.seed)
    data = load_training_images(images)
    enc = VAEEncoder(cfg.latent_dim, cfg.width).to(device).train()
    dec = VAEDecoder(cfg.latent_dim, cfg.width).to(device).train()
    params = [*enc.parameters(), *dec.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, cfg.warmup))
    batches = minibatches(data, cfg.batch_size, rng, device)
    timer = Timer()
    for step in range(steps):
        x = next(batches)
        mu, logvar = enc(x)
        z = mu + torch.randn(mu.shape, generator=rng).to(device) * (0.5 * logvar).exp()
        rec = F.binary_cross_entropy_with_logits(dec.logits(z), x, reduction="sum") / x.shape[0]
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / x.shape[0]
        loss = rec + kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"[{cfg.name}] step {step + 1}/{steps} rec {rec.item():.1f} kl {kl.item():.1f} {timer.seconds:.0f}s")
    seconds = timer.seconds
    root = Path(out_dir) / cfg.name
    root.mkdir(parents=True, exist_ok=True)
    enc.to("cpu")
    dec.to("cpu")
    save_weights(dec, root / "decoder.safetensors")
    save_weights(enc, root / "encoder.safetensors")
    return {
        "steps": steps,
        "epochs": steps * cfg.batch_size / data.shape[0],
        "seconds": seconds,
        "parameters": count_parameters(dec),
        "encoder_parameters": count_parameters(enc),
        "device": str(device),
    }


def weight_files(cfg: VAEConfig) -> list[str]:
    return [f"{cfg.name}/decoder.safetensors", f"{cfg.name}/encoder.safetensors"]


def load_modules(cfg: VAEConfig, weights_dir: Path, device: str | torch.device = "cpu"):
    root = Path(weights_dir) / cfg.name
    return (
        load_weights(VAEDecoder(cfg.latent_dim, cfg.width), root / "decoder.safetensors", device),
        load_weights(VAEEncoder(cfg.latent_dim, cfg.width), root / "encoder.safetensors", device),
    )


def load(cfg: VAEConfig, weights_dir: Path, device: str | torch.device = "cpu"):
    from imgorigin.verification.generators.torch_module import ModuleGenerator

    dec, enc = load_modules(cfg, weights_dir, device)
    return ModuleGenerator(
        dec, (cfg.latent_dim,), id=f"zoo:{cfg.name}", output_range="unit", encoder=VAEMeanEncoder(enc)
    ).to(device)
