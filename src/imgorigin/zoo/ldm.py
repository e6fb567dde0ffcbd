"""``ldm``: latent diffusion — a small diffusers ``AutoencoderKL`` (28×28×1 → 7×7×4) plus a small
``UNet2DModel`` trained with the DDPM objective in its (scaled) latent space, sampled by deterministic DDIM.

For verification the generator is the AUTOENCODER DECODER (scaled latent [4, 7, 7] → image), initialised from
the encoder's posterior mean, as LatentTracer does for Stable Diffusion. For sampling, latents come from the
latent diffusion model (x_T ~ N(0, I) → DDIM) and are decoded.

Stage 1 (autoencoder): L1 + MSE reconstruction on images in [-1, 1] + a small KL term; the scaling factor
(1 / std of the posterior-mean latents of the training set) is stored in the VAE config, as for SD.
Stage 2 (latent diffusion): ε-prediction, 1000-step linear β schedule, on the scaled posterior means; a
single-resolution UNet (7×7 latents do not halve evenly) with a self-attention mid block.

Shipped as diffusers folders under ``weights/ldm/``: ``vae`` (``AutoencoderKL``), ``unet`` (latent
``UNet2DModel``) and ``scheduler`` (``DDIMScheduler``). Training of both stages: :mod:`imgorigin.zoo.training.ldm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from imgorigin.verification.generators.autoencoder import AutoencoderGenerator

FAMILY = "latent diffusion (AutoencoderKL + latent DDPM, DDIM sampler)"


@dataclass(frozen=True)
class LDMConfig:
    """The recipe's autoencoder, latent UNet, diffusion and training hyper-parameters (in the model card)."""

    name: str = "ldm"
    seed: int = 4
    # stage 1: AutoencoderKL
    ae_block_out_channels: tuple[int, ...] = (16, 32, 32)
    ae_layers_per_block: int = 1
    ae_norm_num_groups: int = 8
    latent_channels: int = 4
    ae_steps: int = 1500
    ae_batch_size: int = 64
    ae_lr: float = 1e-3
    ae_warmup: int = 100
    kl_weight: float = 1e-4
    # stage 2: latent UNet2DModel (single resolution)
    block_out_channels: tuple[int, ...] = (64,)
    down_block_types: tuple[str, ...] = ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",)
    layers_per_block: int = 1
    norm_num_groups: int = 16
    attention_head_dim: int = 32
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_inference_steps: int = 10
    timestep_spacing: str = "trailing"
    steps: int = 2500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.995


def weight_files(cfg: LDMConfig) -> list[str]:
    """The autoencoder's and the latent UNet's weight files, relative to a weights folder."""
    return [
        f"{cfg.name}/vae/diffusion_pytorch_model.safetensors",
        f"{cfg.name}/unet/diffusion_pytorch_model.safetensors",
    ]


def load_components(cfg: LDMConfig, weights_dir: Path, device: str | torch.device = "cpu"):
    """The diffusers ``AutoencoderKL``, latent ``UNet2DModel`` (eval mode, on ``device``) and ``DDIMScheduler``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DModel

    root = Path(weights_dir) / cfg.name
    vae = AutoencoderKL.from_pretrained(root / "vae", low_cpu_mem_usage=False).to(device).eval()
    unet = UNet2DModel.from_pretrained(root / "unet", low_cpu_mem_usage=False).to(device).eval()
    scheduler = DDIMScheduler.from_pretrained(root / "scheduler")
    return vae, unet, scheduler


@torch.no_grad()
def ddim_sample(unet, scheduler, x_t: torch.Tensor, num_inference_steps: int) -> torch.Tensor:
    """Deterministic DDIM (η = 0) from ``x_t`` to x_0; returns the model's raw output range ([-1, 1])."""
    scheduler.set_timesteps(num_inference_steps, device=x_t.device)
    x = x_t
    for t in scheduler.timesteps:
        eps = unet(x, t).sample
        x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    return x


class LatentSampler:
    """Scaled latents from the latent diffusion model: x_T ~ N(0, I) (drawn from the caller's RNG) → DDIM."""

    def __init__(self, unet, scheduler, num_inference_steps: int) -> None:
        self.unet, self.scheduler, self.num_inference_steps = unet, scheduler, num_inference_steps

    @torch.no_grad()
    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        cfg = self.unet.config
        x_t = torch.randn((n, cfg.in_channels, cfg.sample_size, cfg.sample_size), generator=generator)
        device = next(self.unet.parameters()).device
        return ddim_sample(self.unet, self.scheduler, x_t.to(device), self.num_inference_steps)


def load(cfg: LDMConfig, weights_dir: Path, device: str | torch.device = "cpu") -> AutoencoderGenerator:
    """The autoencoder decoder as verification inverts it; its samples come from the latent diffusion model."""
    from imgorigin.verification.generators.autoencoder import AutoencoderGenerator

    vae, unet, scheduler = load_components(cfg, weights_dir, device)
    sampler = LatentSampler(unet, scheduler, cfg.num_inference_steps)
    return AutoencoderGenerator(vae, id=f"zoo:{cfg.name}", latent_sampler=sampler).to(device)
