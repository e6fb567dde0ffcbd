"""The denoising profile: the training-free score of pixel diffusion models (imgorigin.verification.profile)."""

from __future__ import annotations

import json

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imgorigin.cli import app
from imgorigin.errors import UsageError
from imgorigin.images import quantize_8bit
from imgorigin.metrics import auroc
from imgorigin.records import read_records
from imgorigin.verification import Verifier, calibrate
from imgorigin.verification.calibration import Calibration, CalibrationError
from imgorigin.verification.fastpath import FastConfig, fast_scores
from imgorigin.verification.generators.ddim import DDIMGenerator
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.profile import PROFILE, feature_names, profile_features, require_diffusion
from tiny_models import tiny_unet, tiny_vae

CONFIG = FastConfig(score=PROFILE, timesteps=(1, 5), draws=2)


def tiny_ddim(seed: int = 0) -> DDIMGenerator:
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=100, clip_sample=False)
    return DDIMGenerator(tiny_unet(seed=seed), scheduler, 4, id=f"tiny-ddim-{seed}")


def uniform(n: int, seed: int = 0) -> torch.Tensor:
    return quantize_8bit(torch.rand((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed)))


def test_profile_is_deterministic_batch_independent_and_named():
    gen = tiny_ddim()
    images = quantize_8bit(gen.sample(6, seed=3))
    full = profile_features(gen, images, CONFIG)
    assert full.shape == (6, len(feature_names(CONFIG.timesteps))) == (6, 6)
    assert feature_names(CONFIG.timesteps)[:2] == ["saturated@1", "interior@1"]
    np.testing.assert_allclose(profile_features(gen, images[[4, 2]], CONFIG), full[[4, 2]], rtol=1e-5)
    np.testing.assert_array_equal(profile_features(gen, images, CONFIG), full)


def test_an_image_without_saturated_pixels_has_equal_saturated_and_interior_errors():
    gen = tiny_ddim()
    mid = torch.full((2, 1, 8, 8), 0.5) + 0.1 * torch.rand((2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    features = profile_features(gen, mid, CONFIG)
    np.testing.assert_allclose(features[:, 0], features[:, 1], rtol=1e-6)  # the pseudo-pixel: its overall mean
    saturated = mid.clone()
    saturated[:, :, :4] = 0.0
    split = profile_features(gen, saturated, CONFIG)
    assert np.all(np.abs(split[:, 0] - split[:, 1]) > 1e-3)


def test_calibration_fits_on_one_part_and_keeps_the_distances_of_the_rest(tmp_path):
    gen = tiny_ddim()
    cal = calibrate(gen, 80, config=CONFIG, seed=0)
    assert cal.method == PROFILE and cal.is_fast and cal.fast.profile["n_fit"] == 48 and cal.scores.size == 32
    assert np.all(cal.scores >= 0) and cal.floor == 0.0 and cal.sampler == gen.sampler
    members = fast_scores(gen, quantize_8bit(gen.sample(40, seed=9)), cal.fast).scores
    noise = fast_scores(gen, uniform(40), cal.fast).scores
    assert auroc(-members, -noise) > 0.85  # the model's own samples sit where its profile does
    loaded = Calibration.load(cal.save(tmp_path / "cal.json"))
    assert loaded.fast == cal.fast and loaded.digest() == cal.digest()
    data = json.loads((tmp_path / "cal.json").read_text())
    assert data["method"] == PROFILE and "homogeneity" not in data["fast"] and data["inversion"] is None


def test_verifier_decides_profile_scores_and_refuses_the_other_kinds():
    gen = tiny_ddim()
    cal = calibrate(gen, 60, config=CONFIG, seed=0)
    verifier = Verifier(gen, cal, detail_alpha=None)
    assert verifier.method == "fast" and verifier.identity()["method"] == PROFILE
    records = verifier.verify_tensors(torch.cat([quantize_8bit(gen.sample(20, seed=5)), uniform(20)]))
    accepted = np.array([r["verdict"] == "member" for r in records])
    assert accepted[:20].mean() >= 0.8 and accepted[20:].mean() <= 0.4
    with pytest.raises(CalibrationError, match="denoising-profile scores"):
        Verifier(gen, cal, method="inversion")
    with pytest.raises(CalibrationError, match="fitted profile"):
        Calibration(cal.model_id, cal.weight_hash, cal.image_shape, InversionConfig(), cal.scores, method=PROFILE)


def test_models_without_a_diffusion_unet_are_refused_by_name():
    from imgorigin.verification.generators.autoencoder import AutoencoderGenerator

    gen = AutoencoderGenerator(tiny_vae(), id="tiny-vae")
    with pytest.raises(UsageError, match="tiny-vae is not a pixel diffusion model"):
        require_diffusion(gen)
    with pytest.raises(UsageError, match="pixel diffusion"):
        calibrate(gen, 10, config=CONFIG)


def test_cli_calibrates_and_verifies_with_the_profile(tmp_path):
    pipe = tmp_path / "pipe"
    diffusers.DDPMPipeline(
        unet=tiny_unet(), scheduler=diffusers.DDPMScheduler(num_train_timesteps=100)
    ).save_pretrained(pipe)
    runner = CliRunner()
    cal = tmp_path / "cal.json"
    made = runner.invoke(
        app, ["calibrate", str(pipe), "--method", "profile", "-n", "40", "--ddim-steps", "3", "--out", str(cal)]
    )
    assert made.exit_code == 0, made.output
    assert json.loads(cal.read_text())["sampler"]["num_inference_steps"] == 3
    folder = tmp_path / "images"
    folder.mkdir()
    for k, x in enumerate(uniform(3)):
        Image.fromarray((x[0].numpy() * 255).round().astype(np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "records.jsonl"
    run = runner.invoke(app, ["verify", str(pipe), str(folder), "-c", str(cal), "-o", str(out)])
    assert run.exit_code == 0, run.output
    records = read_records(out)
    assert len(records) == 3 and {r["method"] for r in records} == {PROFILE}
    assert set(records[0]["score_parts"]) == set(feature_names(FastConfig().timesteps))
    wrong = runner.invoke(app, ["verify", str(pipe), str(folder), "-c", str(cal), "--method", "inversion"])
    assert wrong.exit_code == 2 and "denoising-profile scores" in wrong.output
