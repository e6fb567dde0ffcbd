"""Scores from a latent diffusion model's own UNet: what tells apart two models that share an autoencoder.

With a strong autoencoder, decoder inversion reconstructs real photos and other models' images nearly as well as
the model's own, and a second model on the same autoencoder reconstructs *exactly* as well: its images are decoder
outputs too. What differs is the latent diffusion model that made the latent. Two scores use it, both without
optimisation of their own, on a latent ``z`` of the image (scaled, as the UNet sees it): the encoder's ``E(x)``, or
the latent decoder inversion found. On the latent a member was decoded from they separate two UNets that share an
autoencoder; from the encoder's or the inverted latent of the zoo's strong models they do not (both land far from
it; measured in the README, colour latent diffusion):

* ``denoising`` — the UNet's ε-prediction error on ``z`` noised at a few timesteps with fixed noise (the
  diffusion loss, an ELBO term, as loss-based membership tests use it): the model's own outputs sit where its
  denoiser is most accurate.
* ``ddim-inversion`` — x_T recovered from ``z`` by DDIM inversion over the sampler's own timesteps (fixed-point
  refined, so it inverts the deterministic chain that made a member), scored by how far x_T is from a draw of
  N(0, I): the squared norm's deviation from its expectation and the energy of its 4×4 block means (a member's
  x_T is white noise; another model's latent pulled back through this chain keeps image structure).

Both are deterministic (the same noise for every image, whatever the batch) and small = like the model, so they
plug into the conformal p-value against the scores of the model's own samples, as the inversion loss does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from imgorigin.verification.generators.autoencoder import LatentDiffusion
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.generators.ddim import ddim_inversion


@dataclass(frozen=True)
class DiffusionScoreConfig:
    """Settings of the latent diffusion scores."""

    #: Where on the training schedule the denoising error is measured, as fractions of its length (0.1 of a
    #: 1000-step schedule: t = 100).
    timestep_fractions: tuple[float, ...] = (0.05, 0.1, 0.2)
    #: Noise draws per timestep (the same draws for every image).
    draws: int = 2
    seed: int = 0
    #: Fixed-point iterations per backward DDIM step (0: plain DDIM inversion).
    fixed_point_iterations: int = 3
    #: Side of the blocks whose means the x_T whiteness term measures.
    block: int = 4
    batch_size: int = 100


def latent_diffusion_of(generator: Generator) -> LatentDiffusion | None:
    """The latent diffusion model bound to an autoencoder generator (None for any other generator)."""
    sampler = getattr(generator, "latent_sampler", None)
    return sampler if isinstance(sampler, LatentDiffusion) else None


def _alphas(diffusion: LatentDiffusion, device: torch.device) -> torch.Tensor:
    return diffusion.scheduler.alphas_cumprod.to(device, torch.float32)


def fixed_noise(shape: tuple[int, ...], draws: int, seed: int, device: torch.device) -> torch.Tensor:
    """``draws`` standard normal tensors of ``shape`` from ``seed``: the same noise for every image and batch."""
    return torch.randn((draws, *shape), generator=torch.Generator().manual_seed(seed)).to(device)


@torch.no_grad()
def error_maps(
    unet: torch.nn.Module, alphas: torch.Tensor, x: torch.Tensor, t: int, noise: torch.Tensor
) -> torch.Tensor:
    """Per-element squared ε-prediction error of ``unet`` on ``x`` noised to timestep ``t`` with each of the
    ``noise`` draws, averaged over the draws: ``x``'s shape."""
    a = alphas[t]
    out = torch.zeros_like(x)
    for eps in noise:
        x_t = a.sqrt() * x + (1 - a).sqrt() * eps
        out += (unet(x_t, t).sample - eps).pow(2) / len(noise)
    return out


@torch.no_grad()
def denoising_error(
    diffusion: LatentDiffusion, latents: torch.Tensor, config: DiffusionScoreConfig | None = None
) -> np.ndarray:
    """Mean squared ε-prediction error of each latent ``[N, C, h, w]`` at every configured timestep, averaged over
    the noise draws: ``[N, len(timestep_fractions)]``."""
    config = config or DiffusionScoreConfig()
    alphas = _alphas(diffusion, latents.device)
    noise = fixed_noise(tuple(latents.shape[1:]), config.draws, config.seed, latents.device)
    steps = int(diffusion.scheduler.config.num_train_timesteps)
    timesteps = [min(steps - 1, round(f * steps)) for f in config.timestep_fractions]
    columns = [error_maps(diffusion.unet, alphas, latents, t, noise).flatten(1).mean(1) for t in timesteps]
    return torch.stack(columns, 1).double().cpu().numpy()


def ddim_invert(diffusion: LatentDiffusion, latents: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """x_T of each latent by fixed-point DDIM inversion over the sampler's own timesteps
    (:func:`~imgorigin.verification.generators.ddim.ddim_inversion`)."""
    diffusion.scheduler.set_timesteps(diffusion.num_inference_steps)
    timesteps = [int(t) for t in diffusion.scheduler.timesteps]
    return ddim_inversion(diffusion.unet, diffusion.scheduler, timesteps, latents, iterations)


def gaussian_atypicality(x_t: torch.Tensor, block: int = 4) -> np.ndarray:
    """How far each ``x_T`` ``[N, C, h, w]`` is from a draw of N(0, I), in units of the statistic's own spread:
    |‖x‖²/d − 1| · √(d/2) plus the excess energy of its ``block``×``block`` means, (mean² · block² − 1) · √(d'/2)
    (each a standardised χ² deviation; 0 expected for white noise)."""
    d = x_t[0].numel()
    norm = (x_t.pow(2).flatten(1).mean(1) - 1).abs() * (d / 2) ** 0.5
    if min(x_t.shape[-2:]) >= block:
        means = F.avg_pool2d(x_t, block)
        low = (means.pow(2).flatten(1).mean(1) * block**2 - 1) * (means[0].numel() / 2) ** 0.5
    else:
        low = torch.zeros_like(norm)
    return (norm + low.clamp_min(0)).double().cpu().numpy()


def _batched(latents: torch.Tensor, batch_size: int, score: Callable[[torch.Tensor], np.ndarray]) -> np.ndarray:
    parts = [score(chunk) for chunk in latents.split(batch_size)]
    return np.concatenate(parts) if parts else np.empty(0)


def denoising_score(
    diffusion: LatentDiffusion, latents: torch.Tensor, config: DiffusionScoreConfig | None = None
) -> np.ndarray:
    """The ``denoising`` score of each latent: its ε-prediction error averaged over the configured timesteps."""
    config = config or DiffusionScoreConfig()
    return _batched(latents, config.batch_size, lambda z: denoising_error(diffusion, z, config).mean(1))


def xt_atypicality(
    diffusion: LatentDiffusion, latents: torch.Tensor, config: DiffusionScoreConfig | None = None
) -> np.ndarray:
    """The ``ddim-inversion`` score of each latent: the Gaussian atypicality of its DDIM-inverted x_T."""
    config = config or DiffusionScoreConfig()

    def one(z: torch.Tensor) -> np.ndarray:
        return gaussian_atypicality(ddim_invert(diffusion, z, config.fixed_point_iterations), config.block)

    return _batched(latents, config.batch_size, one)


def latent_diffusion_scorers(
    generator: Generator, config: DiffusionScoreConfig | None = None
) -> dict[str, Callable[[torch.Tensor], np.ndarray]]:
    """The training-free diffusion scores of a latent diffusion generator on the encoder's latents, each images
    ``[N, C, H, W]`` in [0, 1] → scores (empty for a generator without a bound :class:`LatentDiffusion`)."""
    diffusion = latent_diffusion_of(generator)
    if diffusion is None:
        return {}
    config = config or DiffusionScoreConfig()

    @torch.no_grad()
    def latents(images: torch.Tensor) -> torch.Tensor:
        chunks = images.split(config.batch_size)
        return torch.cat([generator.encode(x.to(generator.device, torch.float32)) for x in chunks])

    return {
        "denoising": lambda images: denoising_score(diffusion, latents(images), config),
        "ddim-inversion": lambda images: xt_atypicality(diffusion, latents(images), config),
    }
