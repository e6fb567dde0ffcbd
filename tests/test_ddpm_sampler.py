"""DDIM sampler settings of pixel-diffusion generators: clipping, its gradient, the encoder, and identity.

The "UNet" here is the exact ε-predictor of Gaussian data N(0, s² I) (ε*(x_t) = √(1−ᾱ) x_t / (ᾱ s² + 1 − ᾱ)),
scaled by a learnable-looking parameter so that it has weights to hash: DDIM on it is a smooth, well-conditioned
map whose samples lie inside [-1, 1] — a stand-in for a trained model, built in microseconds.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from imgorigin.runtime import weights_sha256
from imgorigin.verification.calibration import Calibration, CalibrationError
from imgorigin.verification.generators.ddim import DEFAULT_STEPS, DDIMGenerator
from imgorigin.verification.inversion import InversionConfig

SIZE = 8


class GaussianEps(nn.Module):
    """ε-prediction of data ~ N(0, s² I), times a parameter ``gain`` (1: exact)."""

    def __init__(self, alphas_cumprod: torch.Tensor, s: float = 0.35, gain: float = 1.0) -> None:
        super().__init__()
        self.config = SimpleNamespace(sample_size=SIZE, in_channels=1)
        self.register_buffer("alphas", alphas_cumprod.float().clone())
        self.s2 = s * s
        self.gain = nn.Parameter(torch.tensor(float(gain)))

    def forward(self, x: torch.Tensor, t) -> SimpleNamespace:
        a = self.alphas[int(t)]
        return SimpleNamespace(sample=self.gain * (1 - a).sqrt() * x / (a * self.s2 + 1 - a))


def scheduler(clip_sample: bool = True, spacing: str = "trailing"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        prediction_type="epsilon",
        clip_sample=clip_sample,
        set_alpha_to_one=True,
        timestep_spacing=spacing,
    )


def make(gain: float = 1.0, steps: int = 5, s: float = 0.35, **kwargs) -> DDIMGenerator:
    sch = scheduler()
    return DDIMGenerator(GaussianEps(sch.alphas_cumprod, s=s, gain=gain), sch, steps, **kwargs)


def latents(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn((n, 1, SIZE, SIZE), generator=torch.Generator().manual_seed(seed))


def test_default_decode_is_the_schedulers_own_chain_bit_for_bit():
    gen = make(gain=1.3)  # gain > 1: x_0 predictions overshoot, so the clip is active
    z = latents()
    x = z
    with torch.no_grad():
        for t in gen.timesteps:
            x = gen.scheduler.step(gen.unet(x, t).sample, t, x, eta=0.0).prev_sample
        assert torch.equal(gen.decode(z), ((x + 1) / 2).clamp(0, 1))
    assert gen.clip_sample is True and gen.sampler["clip_sample"] is True


def test_clip_sample_override_changes_the_chain_only_where_clipped():
    clipped, free = make(gain=1.3), make(gain=1.3, clip_sample=False)
    z = latents()
    with torch.no_grad():
        a, b = clipped.decode(z), free.decode(z)
    assert not torch.equal(a, b)
    # the exact Gaussian predictor rarely overshoots: both chains agree almost everywhere
    exact_clip, exact_free = make(), make(clip_sample=False)
    with torch.no_grad():
        diff = (exact_clip.decode(z) - exact_free.decode(z)).abs()
    assert float((diff > 1e-6).float().mean()) < 0.2


def test_straight_through_keeps_the_forward_pass_and_passes_gradient_through_clipped_pixels():
    exact, st = make(gain=1.3), make(gain=1.3, clip_gradient="straight_through")
    z = latents()
    grads = []
    for gen in (exact, st):
        zz = z.clone().requires_grad_(True)
        out = gen.decode(zz)
        (out - 0.5).pow(2).sum().backward()
        grads.append(zz.grad)
        with torch.no_grad():
            assert torch.equal(out, exact.decode(z))
    # the clip zeroes the x_0 part of the gradient; straight-through keeps it, so the gradients differ
    assert not torch.allclose(grads[0], grads[1])
    with pytest.raises(ValueError, match="clip_gradient"):
        make(clip_gradient="soft")


def test_fixed_point_encoder_inverts_the_unclipped_chain():
    errors = {}
    z = latents(6)
    for iterations in (0, 40):
        gen = make(gain=0.95, s=0.25, clip_sample=False, encoder_iterations=iterations)
        with torch.no_grad():
            x = gen.decode(z)
            assert float(x.min()) > 0 and float(x.max()) < 1  # inside the output range: nothing lost to the clamp
            errors[iterations] = float((gen.decode(gen.encode(x)) - x).pow(2).mean())
    # measured: 4.4e-3 with plain DDIM inversion, 8.4e-9 with 40 fixed-point iterations per step
    assert errors[40] < 1e-7
    assert errors[0] > 1e4 * errors[40]


def test_sampler_records_every_setting():
    gen = make(steps=4, clip_gradient="straight_through", encoder_iterations=3)
    s = gen.sampler
    assert s["num_inference_steps"] == 4 and s["timesteps"] == [999, 749, 499, 249]
    assert s["timestep_spacing"] == "trailing" and s["eta"] == 0.0 and s["prediction_type"] == "epsilon"
    assert s["clip_sample"] is True and s["clip_sample_range"] == 1.0 and s["clip_gradient"] == "straight_through"
    assert s["encoder"] == {"kind": "ddim_inversion", "fixed_point_iterations": 3}
    free = make(clip_sample=False).sampler
    assert free["clip_sample"] is False and free["clip_gradient"] is None  # no clip: no gradient choice


def test_weight_hash_is_the_plain_hash_only_for_the_canonical_sampler():
    unet_hash = weights_sha256(make().unet)
    canonical = make(steps=DEFAULT_STEPS)
    assert canonical.weight_hash() == unet_hash  # calibrations made before sampler settings counted still match
    variants = [
        make(steps=10),
        make(steps=DEFAULT_STEPS, clip_sample=False),
        make(steps=DEFAULT_STEPS, clip_gradient="straight_through"),
        make(steps=DEFAULT_STEPS, encoder_iterations=5),
    ]
    hashes = {v.weight_hash() for v in variants} | {unet_hash}
    assert len(hashes) == len(variants) + 1
    # a generator built with an explicit canonical sampler (as the zoo recipe does) hashes to the weights
    recipe = make(steps=10, clip_sample=False, canonical=make(steps=10, clip_sample=False).sampler)
    assert recipe.weight_hash() == unet_hash
    assert make(steps=10, canonical=recipe.canonical).weight_hash() != unet_hash


def test_calibration_made_with_one_sampler_refuses_another():
    a = make(steps=DEFAULT_STEPS, clip_sample=False)
    b = make(steps=DEFAULT_STEPS)
    cal = Calibration(
        model_id=a.id,
        weight_hash=a.weight_hash(),
        image_shape=a.image_shape,
        inversion=InversionConfig(),
        scores=np.array([1e-6, 2e-6, 3e-6]),
    )
    cal.check_model(a.id, a.weight_hash(), a.image_shape)
    with pytest.raises(CalibrationError, match="calibration was made for"):
        cal.check_model(b.id, b.weight_hash(), b.image_shape)


def test_zoo_ddpm_records_its_sampler():
    from imgorigin import zoo

    gen = zoo.load("ddpm")
    cfg = zoo.get_recipe("ddpm").config
    s = gen.sampler
    assert s["num_inference_steps"] == cfg.num_inference_steps and s["timestep_spacing"] == cfg.timestep_spacing
    assert s == gen.canonical  # the recipe's own settings: the weight hash is the card's
    assert gen.weight_hash() == zoo.model_card("ddpm")["generator"]["weight_hash"]
