"""Model loading by spec: TorchScript, factories, and diffusers autoencoders / DDIM models (tiny, random)."""

from __future__ import annotations

import pytest
import torch

from imgorigin.verification import load_generator
from imgorigin.verification.generators import ModelSpecError, TorchScriptError
from imgorigin.verification.generators.autoencoder import AutoencoderGenerator
from imgorigin.verification.generators.ddim import DDIMGenerator
from imgorigin.verification.inversion import InversionConfig, invert
from tiny_models import TinyGenerator, save_torchscript, tiny_unet, tiny_vae

diffusers = pytest.importorskip("diffusers")


def test_torchscript_round_trip(tmp_path):
    module = TinyGenerator(seed=3)
    save_torchscript(module, tmp_path / "g.pt")
    gen = load_generator(str(tmp_path / "g.pt"))
    assert gen.latent_shape == (8,) and gen.image_shape == (1, 16, 16)
    z = torch.randn(2, 8)
    torch.testing.assert_close(gen.decode(z), ((module(z) + 1) / 2).clamp(0, 1))
    assert gen.weight_hash() == load_generator(str(tmp_path / "g.pt")).weight_hash()


def test_torchscript_contract_errors(tmp_path):
    class NoShape(torch.nn.Module):
        def forward(self, z):
            return z.view(-1, 1, 2, 2)

    torch.jit.save(torch.jit.script(NoShape()), str(tmp_path / "noshape.pt"))
    with pytest.raises(TorchScriptError, match="latent_shape"):
        load_generator(str(tmp_path / "noshape.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(TorchScriptError, match="junk.pt: not a TorchScript file"):
        load_generator(str(tmp_path / "junk.pt"))


def test_factory_and_bad_specs():
    gen = load_generator("tiny_models:factory")
    assert gen.image_shape == (1, 16, 16)
    with pytest.raises(ModelSpecError, match="cannot import"):
        load_generator("tiny_models:missing")
    with pytest.raises(ModelSpecError, match="Accepted"):
        load_generator("no such thing")


@pytest.mark.parametrize("cls_name", ["AutoencoderKL", "VQModel"])
def test_diffusers_autoencoder_dir_inverts_decoder_latent_from_encoder(tmp_path, cls_name):
    tiny_vae(getattr(diffusers, cls_name)).save_pretrained(tmp_path / "vae")
    gen = load_generator(str(tmp_path / "vae"))
    assert isinstance(gen, AutoencoderGenerator) and gen.has_encoder
    assert gen.latent_shape == (2, 8, 8) and gen.image_shape == (1, 16, 16)
    # samples off the decoder's range (an encoder can map a decoder output straight back to it: nothing to improve)
    noise = torch.randn((2, *gen.image_shape), generator=torch.Generator().manual_seed(2))
    images = (gen.sample(2, seed=1) + 0.05 * noise).clamp(0, 1)
    cfg = InversionConfig(steps=15, restarts=1, patience=15)
    start = invert(gen, images, InversionConfig(steps=1, restarts=1)).scores
    final = invert(gen, images, cfg).scores
    assert (final <= start).all() and final.mean() < 0.8 * start.mean()


def test_ddim_chain_from_unet_dir_and_pipeline_dir(tmp_path):
    unet, scheduler = tiny_unet(), diffusers.DDIMScheduler(num_train_timesteps=100)
    unet.save_pretrained(tmp_path / "unet")
    scheduler.save_pretrained(tmp_path / "unet" / "scheduler")
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=100)).save_pretrained(
        tmp_path / "pipe"
    )
    for path in (tmp_path / "unet", tmp_path / "pipe"):
        gen = load_generator(str(path), ddim_steps=3)
        assert isinstance(gen, DDIMGenerator) and gen.num_inference_steps == 3
        assert gen.latent_shape == (1, 8, 8)
        z = torch.randn(2, 1, 8, 8, requires_grad=True)
        out = gen.decode(z)
        assert out.shape == (2, 1, 8, 8) and out.min() >= 0 and out.max() <= 1
        out.sum().backward()
        assert z.grad.abs().sum() > 0  # the gradient reaches x_T through the whole chain
        torch.testing.assert_close(gen.decode(z.detach()), gen.decode(z.detach()))


def test_ddim_inversion_encoder_lands_near_the_chain_input():
    gen = DDIMGenerator(
        tiny_unet(), diffusers.DDIMScheduler(num_train_timesteps=100, clip_sample=False), num_inference_steps=5
    )
    assert gen.has_encoder
    with torch.no_grad():
        z = gen.sample_latents(4, torch.Generator().manual_seed(0))
        images = gen.decode(z)
        recovered = gen.encode(images)
        random = gen.sample_latents(4, torch.Generator().manual_seed(1))
        err = (gen.decode(recovered) - images).pow(2).mean()
        baseline = (gen.decode(random) - images).pow(2).mean()
    assert err < 0.1 * baseline


def test_pipeline_dir_loads_with_the_sampler_its_calibration_records(tmp_path):
    """A DDPMPipeline folder calibrated at 3 DDIM steps is verified at 3 steps, not the 20 it loads with by default;
    a calibration of the clipped chain refuses the unclipped one by naming the setting."""
    from imgorigin.verification import Verifier, calibrate
    from imgorigin.verification.calibration import Calibration, CalibrationError

    pipe = tmp_path / "pipe"
    diffusers.DDPMPipeline(
        unet=tiny_unet(), scheduler=diffusers.DDPMScheduler(num_train_timesteps=100)
    ).save_pretrained(pipe)
    made = load_generator(str(pipe), ddim_steps=3)
    cal = calibrate(made, 3, config=InversionConfig(steps=2, restarts=1), auto_retries=0)
    cal.save(tmp_path / "cal.json")
    cal = Calibration.load(tmp_path / "cal.json")
    assert cal.sampler == made.sampler and cal.sampler["num_inference_steps"] == 3
    plain = load_generator(str(pipe))
    assert plain.num_inference_steps == 20
    with pytest.raises(CalibrationError, match="num_inference_steps: 3 != 20"):
        Verifier(plain, cal, detail_alpha=None)
    again = load_generator(str(pipe), sampler=cal.sampler)
    assert again.sampler == cal.sampler and again.weight_hash() == cal.weight_hash
    Verifier(again, cal, detail_alpha=None)  # accepted
    unclipped = again.with_sampler(
        {**cal.sampler, "clip_sample": False, "clip_sample_range": None, "clip_gradient": None}
    )
    with pytest.raises(CalibrationError, match="clip_sample: True != False"):
        Verifier(unclipped, cal, detail_alpha=None)
    with pytest.raises(CalibrationError, match="cannot be set to the recorded sampler: timestep_spacing"):
        load_generator(str(pipe), sampler={**cal.sampler, "timestep_spacing": "trailing"})
