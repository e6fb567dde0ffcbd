"""Adapter for pixel diffusion models: x_T → deterministic DDIM chain (eta = 0) → image.

Inversion optimises x_T with the gradient back-propagated through all ``num_inference_steps`` UNet calls,
as the RONAN code does for DDPM (there with 50 steps); fewer steps make inversion affordable on a CPU.
The encoder is DDIM inversion (the chain run backwards from the image, ε evaluated at the current point):
for the model's own images it lands next to the true x_T, so the optimiser starts in the right basin.
"""

from __future__ import annotations

import torch

from imgorigin.verification.generators.base import Generator
from imgorigin.verification.generators.torch_module import to_unit_range


class DDIMGenerator(Generator):
    """A diffusers ``UNet2DModel`` plus a ``DDIMScheduler``, sampled deterministically in k steps."""

    def __init__(self, unet: torch.nn.Module, scheduler, num_inference_steps: int = 20, *, id: str = "ddim") -> None:
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

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """x_T for ``images`` in [0, 1] by deterministic DDIM inversion over the same timesteps."""
        alphas = self.scheduler.alphas_cumprod.to(images.device, torch.float32)
        final = torch.as_tensor(float(self.scheduler.final_alpha_cumprod), device=images.device)
        stride = self.scheduler.config.num_train_timesteps // self.num_inference_steps
        x = images.to(torch.float32) * 2 - 1
        for t in reversed(self.timesteps):
            a_from = alphas[t - stride] if t - stride >= 0 else final
            a_to = alphas[t]
            eps = self.unet(x, t).sample
            x0 = (x - (1 - a_from).sqrt() * eps) / a_from.sqrt()
            x = a_to.sqrt() * x0 + (1 - a_to).sqrt() * eps
        return x

    @property
    def has_encoder(self) -> bool:
        return True

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet]
