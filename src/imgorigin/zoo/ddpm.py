"""``ddpm``: pixel-space diffusion — a small diffusers ``UNet2DModel`` on 28×28, sampled by deterministic DDIM.

Training: the standard DDPM ε-prediction objective (1000-step linear β schedule) on Fashion-MNIST scaled to
[-1, 1], AdamW with warm-up + cosine decay, EMA of the weights (the EMA weights are shipped).
Generator for verification: x_T ~ N(0, I) [1, 28, 28] → ``num_inference_steps`` deterministic DDIM steps
(η = 0, "trailing" timestep spacing, so the first step starts at t = 999) → image in [-1, 1] → [0, 1].

Shipped as diffusers folders: ``weights/ddpm/unet`` (``UNet2DModel``) and ``weights/ddpm/scheduler``
(``DDIMScheduler``), plus ``model_index.json`` so the folder also loads as a diffusers ``DDIMPipeline``.
Training (and the diffusers folders it writes): :mod:`imgorigin.zoo.training.ddpm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from imgorigin.verification.generators.ddim import DDIMGenerator

FAMILY = "pixel diffusion (DDPM objective, DDIM sampler)"


@dataclass(frozen=True)
class DDPMConfig:
    """The recipe's UNet, diffusion and training hyper-parameters (recorded in the model card)."""

    name: str = "ddpm"
    seed: int = 3
    # UNet2DModel
    block_out_channels: tuple[int, ...] = (16, 32, 64)
    down_block_types: tuple[str, ...] = ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    up_block_types: tuple[str, ...] = ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    layers_per_block: int = 1
    norm_num_groups: int = 8
    attention_head_dim: int = 32
    # diffusion
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_inference_steps: int = 10
    timestep_spacing: str = "trailing"
    # optimisation
    steps: int = 1200
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    extra: dict = field(default_factory=dict)


def weight_files(cfg: DDPMConfig) -> list[str]:
    """The UNet's weight file, relative to a weights folder."""
    return [f"{cfg.name}/unet/diffusion_pytorch_model.safetensors"]


def load_components(cfg: DDPMConfig, weights_dir: Path, device: str | torch.device = "cpu"):
    """The diffusers ``UNet2DModel`` (eval mode, on ``device``) and ``DDIMScheduler`` of the shipped folder."""
    from diffusers import DDIMScheduler, UNet2DModel

    root = Path(weights_dir) / cfg.name
    unet = UNet2DModel.from_pretrained(root / "unet", low_cpu_mem_usage=False).to(device).eval()
    scheduler = DDIMScheduler.from_pretrained(root / "scheduler")
    return unet, scheduler


def load(cfg: DDPMConfig, weights_dir: Path, device: str | torch.device = "cpu") -> DDIMGenerator:
    """x_T → the deterministic DDIM chain of ``num_inference_steps`` steps, as verification inverts it.

    The recipe's sampler (its steps; clipping and spacing as the shipped scheduler says) is the generator's
    canonical one, so the weight hash is the model card's; a generator of the same weights built with other
    sampler settings hashes differently and a calibration of this one refuses it (see ``DDIMGenerator.sampler``).
    """
    from imgorigin.verification.generators.ddim import DDIMGenerator

    unet, scheduler = load_components(cfg, weights_dir, device)
    canonical = DDIMGenerator.sampler_settings(scheduler, cfg.num_inference_steps)
    gen = DDIMGenerator(
        unet, scheduler, num_inference_steps=cfg.num_inference_steps, id=f"zoo:{cfg.name}", canonical=canonical
    )
    return gen.to(device).eval()
