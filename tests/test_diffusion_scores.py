"""The latent diffusion scores (denoising error, DDIM inversion + Gaussian atypicality), on tiny random models."""

from __future__ import annotations

import numpy as np
import torch

from imgorigin.verification.diffusion import (
    DiffusionScoreConfig,
    ddim_invert,
    denoising_error,
    gaussian_atypicality,
    latent_diffusion_of,
    latent_diffusion_scorers,
)
from imgorigin.verification.generators.autoencoder import AutoencoderGenerator, ddim_sample
from tiny_models import tiny_latent_model


def test_the_unet_is_part_of_the_model_identity():
    a, b = tiny_latent_model(0), tiny_latent_model(1)
    assert latent_diffusion_of(a) is a.latent_sampler and latent_diffusion_of(AutoencoderGenerator(a.vae)) is None
    # the same autoencoder, another latent UNet: another model (its samples, hence its calibration, differ)
    assert a.weight_hash() != b.weight_hash()
    assert AutoencoderGenerator(a.vae).weight_hash() == AutoencoderGenerator(b.vae).weight_hash()


def test_fixed_point_ddim_inversion_recovers_the_chain_input():
    diffusion = tiny_latent_model().latent_sampler
    with torch.no_grad():
        x_t = torch.randn((3, 2, 8, 8), generator=torch.Generator().manual_seed(3))
        z = ddim_sample(diffusion.unet, diffusion.scheduler, x_t, diffusion.num_inference_steps)
        errors = [(ddim_invert(diffusion, z, k) - x_t).pow(2).mean().item() for k in (0, 4)]
    assert errors[1] < 0.1 * errors[0] and errors[1] < 1e-3


def test_gaussian_atypicality_is_small_for_white_noise_and_large_for_structure():
    g = torch.Generator().manual_seed(0)
    white = torch.randn((200, 4, 16, 16), generator=g)
    # the statistic is standardised: |z| of a chi-square deviation, mean about 0.8 for white noise
    assert 0.4 < gaussian_atypicality(white).mean() < 1.5
    smooth = torch.nn.functional.interpolate(torch.randn((200, 4, 4, 4), generator=g), scale_factor=4)
    scaled = white * 1.3
    assert gaussian_atypicality(smooth).min() > 10 and np.median(gaussian_atypicality(scaled)) > 10


def test_denoising_error_is_deterministic_and_independent_of_the_batch():
    gen = tiny_latent_model()
    config = DiffusionScoreConfig(timestep_fractions=(0.1, 0.5), draws=2)
    z = torch.randn((5, 2, 8, 8), generator=torch.Generator().manual_seed(1))
    full = denoising_error(gen.latent_sampler, z, config)
    assert full.shape == (5, 2) and (full > 0).all()
    np.testing.assert_allclose(denoising_error(gen.latent_sampler, z[[4, 2]], config), full[[4, 2]], rtol=1e-5)


def test_scorers_give_one_finite_score_per_image_and_none_without_a_diffusion_model():
    gen = tiny_latent_model()
    images = gen.sample(5, seed=0)
    scorers = latent_diffusion_scorers(gen, DiffusionScoreConfig(timestep_fractions=(0.1,), draws=1, batch_size=2))
    assert set(scorers) == {"denoising", "ddim-inversion"}
    for score in scorers.values():
        values = score(images)
        assert values.shape == (5,) and np.isfinite(values).all()
    assert latent_diffusion_scorers(AutoencoderGenerator(gen.vae)) == {}
