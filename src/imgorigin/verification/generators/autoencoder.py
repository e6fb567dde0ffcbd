"""Adapter for diffusers autoencoders (``AutoencoderKL``, ``VQModel``): the latent-diffusion case.

Verification inverts the decoder latent, initialised from the encoder, as LatentTracer does for Stable
Diffusion: KL models start from the posterior mean × scaling factor; VQ models from the pre-quantisation
code, decoded with ``force_not_quantize=True`` so the latent stays continuous and differentiable.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from imgorigin.verification.generators.base import Generator
from imgorigin.verification.generators.torch_module import to_unit_range

#: Draws ``n`` latents (already scaled, as the diffusion model produces them) with a torch RNG.
LatentSampler = Callable[[int, torch.Generator | None], torch.Tensor]


@torch.no_grad()
def ddim_sample(unet, scheduler, x_t: torch.Tensor, num_inference_steps: int) -> torch.Tensor:
    """Deterministic DDIM (η = 0) from ``x_t`` to x_0 with ``scheduler`` (its timesteps are set here)."""
    scheduler.set_timesteps(num_inference_steps, device=x_t.device)
    x = x_t
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x, eta=0.0).prev_sample
    return x


class LatentDiffusion:
    """A latent diffusion model as a :data:`LatentSampler`: x_T ~ N(0, I) (drawn from the caller's RNG) →
    deterministic DDIM with a diffusers ``UNet2DModel`` and ``DDIMScheduler``. Its ``unet``, ``scheduler`` and
    ``num_inference_steps`` are also what the diffusion scores (:mod:`imgorigin.verification.diffusion`) use."""

    def __init__(self, unet: torch.nn.Module, scheduler, num_inference_steps: int) -> None:
        self.unet, self.scheduler, self.num_inference_steps = unet, scheduler, int(num_inference_steps)

    @torch.no_grad()
    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        cfg = self.unet.config
        x_t = torch.randn((n, cfg.in_channels, cfg.sample_size, cfg.sample_size), generator=generator)
        device = next(self.unet.parameters()).device
        return ddim_sample(self.unet, self.scheduler, x_t.to(device), self.num_inference_steps)


class AutoencoderGenerator(Generator):
    """The decoder of a diffusers ``AutoencoderKL`` or ``VQModel`` as a generator; the encoder gives the start.

    ``latent_sampler`` (optional) is the latent diffusion model that produced the latents: :meth:`sample` uses
    it so that calibration images are the model's real outputs; without it, latents are standard normal.
    """

    def __init__(
        self, vae: torch.nn.Module, *, id: str = "autoencoder", latent_sampler: LatentSampler | None = None
    ) -> None:
        super().__init__()
        self.vae = vae
        self.id = id
        self.latent_sampler = latent_sampler
        config = vae.config
        self.is_vq = type(vae).__name__ == "VQModel"
        self.scaling_factor = float(getattr(config, "scaling_factor", 1.0) or 1.0)
        self.shift_factor = float(getattr(config, "shift_factor", None) or 0.0)
        factor = 2 ** (len(config.block_out_channels) - 1)
        size = int(config.sample_size if isinstance(config.sample_size, int) else config.sample_size[0])
        self.in_channels = int(config.in_channels)
        self.latent_shape = (int(config.latent_channels), size // factor, size // factor)
        self.eval()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        z = z / self.scaling_factor + self.shift_factor
        out = self.vae.decode(z, force_not_quantize=True).sample if self.is_vq else self.vae.decode(z).sample
        return to_unit_range(out, "tanh")

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device) * 2 - 1
        h = self.vae.encode(x).latents if self.is_vq else self.vae.encode(x).latent_dist.mean
        return (h - self.shift_factor) * self.scaling_factor

    @property
    def has_encoder(self) -> bool:
        return True

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, batch_size: int = 64) -> torch.Tensor:
        if self.latent_sampler is None:
            return super().sample(n, seed, batch_size)
        rng = torch.Generator().manual_seed(seed)
        out = []
        for start in range(0, n, batch_size):
            latents = self.latent_sampler(min(batch_size, n - start), rng).to(self.device)
            out.append(self.decode(latents).clamp(0, 1).cpu())
        return torch.cat(out) if out else torch.empty((0, *self.image_shape))

    def modules(self) -> list[torch.nn.Module]:
        """The autoencoder and, when one is bound, the latent diffusion model's UNet: it makes the samples a
        calibration is made of, so two models that share an autoencoder do not share a weight hash."""
        if isinstance(self.latent_sampler, LatentDiffusion):
            return [self.vae, self.latent_sampler.unet]
        return [self.vae]
