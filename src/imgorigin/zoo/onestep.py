"""``ddpm-one-step``: a one-step generator distilled from the zoo ``ddpm`` — the seed paper's consistency-model row.

The student is the teacher's ``UNet2DModel`` (same architecture, initialised from the teacher's weights) called
once, at the first timestep of the teacher's chain (t = 999), and trained by plain regression (Luhman & Luhman
2021) to output what the teacher's deterministic 10-step DDIM chain makes from the same noise: x_T ~ N(0, I)
``[1, 28, 28]`` → one network evaluation → image in [-1, 1] → [0, 1]. Verification inverts the input noise
through that single evaluation. Shipped as a diffusers folder ``weights/ddpm-one-step/unet``. Training (teacher
pairs, loss, EMA): :mod:`imgorigin.zoo.training.onestep`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from imgorigin.zoo.common import gan_generator

if TYPE_CHECKING:
    from imgorigin.verification.generators.torch_module import ModuleGenerator

FAMILY = "one-step diffusion (distilled from ddpm)"
DATA = "teacher"


@dataclass(frozen=True)
class OneStepConfig:
    """The distillation's teacher, data and optimisation hyper-parameters (recorded in the model card)."""

    name: str = "ddpm-one-step"
    seed: int = 5
    teacher: str = "ddpm"
    timestep: int = 999
    pairs: int = 10_000
    steps: int = 1500
    batch_size: int = 64
    lr: float = 5e-4
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995


class OneStepStudent(torch.nn.Module):
    """x_T ``[B, 1, 28, 28]`` → image ``[B, 1, 28, 28]`` in about [-1, 1]: ``unet(x_T, timestep).sample``."""

    def __init__(self, unet: torch.nn.Module, timestep: int) -> None:
        super().__init__()
        self.unet = unet
        self.timestep = int(timestep)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        t = torch.full((z.shape[0],), self.timestep, dtype=torch.long, device=z.device)
        return self.unet(z, t).sample


def weight_files(cfg: OneStepConfig) -> list[str]:
    """The student's weight file, relative to a weights folder."""
    return [f"{cfg.name}/unet/diffusion_pytorch_model.safetensors"]


def load_module(cfg: OneStepConfig, weights_dir: Path, device: str | torch.device = "cpu") -> OneStepStudent:
    """The student with its weights, in eval mode on ``device``."""
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(Path(weights_dir) / cfg.name / "unet", low_cpu_mem_usage=False)
    return OneStepStudent(unet, cfg.timestep).to(device).eval()


def load(cfg: OneStepConfig, weights_dir: Path, device: str | torch.device = "cpu") -> ModuleGenerator:
    """The generator as verification inverts it: x_T ~ N(0, I) ``[1, 28, 28]`` → one evaluation → [0, 1]."""
    return gan_generator(load_module(cfg, weights_dir, device), (1, 28, 28), cfg.name, device)
