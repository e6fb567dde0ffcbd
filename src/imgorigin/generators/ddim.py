"""Adapter for pixel diffusion models: x_T → deterministic DDIM chain (eta = 0) → image.

Inversion optimises x_T with the gradient back-propagated through all ``num_inference_steps`` UNet calls,
as the RONAN code does for DDPM (there with 50 steps); fewer steps make inversion affordable on a CPU.
"""

from __future__ import annotations

import torch

from .base import Generator
from .torch_module import to_unit_range


class DDIMGenerator(Generator):
    """A diffusers ``UNet2DModel`` plus a ``DDIMScheduler``, sampled deterministically in k steps."""

    def __init__(self, unet: torch.nn.Module, scheduler, num_inference_steps: int = 20, *,
                 id: str = "ddim") -> None:
        super().__init__()
        self.unet = unet
        self.scheduler = scheduler
        self.num_inference_steps = int(num_inference_steps)
        scheduler.set_timesteps(self.num_inference_steps)
        self.timesteps = [int(t) for t in scheduler.timesteps]
        self.id = id
        size = unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        self.latent_shape = (int(unet.config.in_channels), int(height), int(width))
        self.eval()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        for t in self.timesteps:
            eps = self.unet(x, t).sample
            x = self.scheduler.step(eps, t, x, eta=0.0).prev_sample
        return to_unit_range(x, "tanh")

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet]
