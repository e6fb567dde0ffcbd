"""The zoo from the command line: list, sample, verify zoo:NAME with its shipped calibration, and the demo."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imgorigin import zoo
from imgorigin.cli import app
from imgorigin.images import load_image, quantize_8bit, save_png
from imgorigin.records import read_records
from imgorigin.runtime import sha256_file
from imgorigin.verification.calibration import Calibration
from imgorigin.verification.fastpath import FastConfig
from imgorigin.verification.profile import PROFILE_SHARE
from imgorigin.zoo import calibrations
from imgorigin.zoo.calibrations import (
    FAST_CALIBRATIONS,
    SHIPPED_SAMPLES,
    calibration_dir,
    calibration_path,
    inversion_config,
)

runner = CliRunner()


def test_zoo_list_names_every_model():
    result = runner.invoke(app, ["zoo", "list"])
    assert result.exit_code == 0
    for name in ("dcgan", "dcgan-twin", "wgangp", "vae", "ddpm", "ldm"):
        assert name in result.output


@pytest.mark.parametrize("path", sorted(calibration_dir().glob("*.json")), ids=lambda p: p.stem)
def test_shipped_calibrations_match_their_models_settings_and_sample_counts(path):
    calibration = Calibration.load(path)
    generator = zoo.load(path.stem)
    calibration.check_model(generator.id, generator.weight_hash(), generator.image_shape)  # raises when stale
    if path.stem in FAST_CALIBRATIONS:  # a training-free score: its settings, its profile fit and the rest
        settings, n = FAST_CALIBRATIONS[path.stem]
        assert calibration.fast == FastConfig.from_dict({**settings, "profile": calibration.fast.profile})
        n_fit = round(PROFILE_SHARE * n)
        assert calibration.fast.profile["n_fit"] == n_fit and calibration.scores.size == n - n_fit
        return
    # the recipe's settings, with the retries the calibration chose from its samples (never fewer than the recipe's)
    recipe = inversion_config(path.stem)
    assert dataclasses.replace(calibration.inversion, retries=recipe.retries) == recipe
    assert calibration.inversion.retries >= recipe.retries
    if calibration.retry_search is not None:
        assert calibration.retry_search["retries"] == calibration.inversion.retries
    assert calibration.scores.size == SHIPPED_SAMPLES


def test_zoo_sample_writes_the_models_own_8bit_images(tmp_path):
    result = runner.invoke(app, ["zoo", "sample", "dcgan", "--n", "3", "--out", str(tmp_path), "--seed", "4"])
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.glob("*.png"))
    assert [f.name for f in files] == [f"dcgan_4_{i:05d}.png" for i in range(3)]
    expected = quantize_8bit(zoo.sample("dcgan", 3, seed=4))
    for f, x in zip(files, expected, strict=True):
        np.testing.assert_array_equal(load_image(f, 1, (28, 28)).pixels, x.numpy())


def test_zoo_unknown_name_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["zoo", "sample", "nope", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown zoo model 'nope'" in result.output


def test_verify_zoo_model_with_shipped_calibration(tmp_path):
    if not calibration_path("dcgan").is_file():
        pytest.fail("the dcgan calibration must be shipped")
    runner.invoke(app, ["zoo", "sample", "dcgan", "--n", "2", "--out", str(tmp_path / "own"), "--seed", "77"])
    out = tmp_path / "r.jsonl"
    result = runner.invoke(
        app,
        ["verify", "zoo:dcgan", str(tmp_path / "own"), "--output", str(out), "--cache-dir", str(tmp_path / "cache")],
    )
    assert result.exit_code == 0, result.output
    records = read_records(out)
    assert len(records) == 2 and all(r["model"] == "zoo:dcgan" for r in records)
    assert sum(r["verdict"] == "member" for r in records) >= 1


def test_demo_prints_a_table_and_writes_a_report(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--per-source", "1"])
    assert result.exit_code == 0, result.output
    assert "true source" in result.output and "zoo:dcgan" in result.output
    page = (tmp_path / "report.html").read_text()
    assert page.count("<h2>") == 2 and "at most 5% of the model&#x27;s own images" in page
    records = read_records(tmp_path / "results_dcgan.jsonl")
    by_source = {r["path"].split("/")[-1].rsplit("_", 1)[0]: r for r in records}
    assert by_source["dcgan"]["verdict"] == "member"
    assert by_source["real"]["verdict"] == "non-member"
    # the VAE's image is smoother than any DCGAN image: no verdict from zoo:dcgan, and the demo says why
    assert by_source["vae"]["verdict"] == "inconclusive" and "smoother_than_model" in by_source["vae"]["reasons"]
    assert "inconclusive: smoother_than_model: less fine detail" in " ".join(result.output.split())


def test_a_zoo_model_without_calibration_says_why(tmp_path):
    image = tmp_path / "x.png"
    save_png(zoo.sample("dcgan", 1, seed=0)[0], image)
    result = runner.invoke(app, ["verify", "zoo:ddpm-one-step", str(image)])
    assert result.exit_code != 0
    assert "ships without a calibration" in result.output and "AUROC" in result.output


def test_zoo_calibrate_default_target_is_the_cache_not_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGORIGIN_CACHE", str(tmp_path / "cache"))
    assert calibrations.output_dir() == tmp_path / "cache" / "zoo-calibration"
    assert calibrations.output_dir(tmp_path / "mine") == tmp_path / "mine"
    package = Path(zoo.__file__).resolve().parent
    assert not calibrations.output_dir().resolve().is_relative_to(package)


def test_zoo_calibrate_writes_to_the_cache_and_leaves_the_shipped_file(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGORIGIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(calibrations, "SHIPPED_SAMPLES", 2)  # the shipped protocol, with 2 samples
    shipped = calibration_path("vae")
    before = sha256_file(shipped)
    result = runner.invoke(app, ["zoo", "calibrate", "vae", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    written = tmp_path / "cache" / "zoo-calibration" / "vae.json"
    assert str(written.parent) in result.output
    calibration = Calibration.load(written)
    assert calibration.scores.size == 2 and calibration.inversion == inversion_config("vae")
    assert sha256_file(shipped) == before
    result = runner.invoke(app, ["zoo", "calibrate", "vae", "--device", "cpu", "--out", str(tmp_path / "mine")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mine" / "vae.json").is_file()


def test_zoo_calibrate_unknown_name_fails_before_calibrating(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGORIGIN_CACHE", str(tmp_path))
    result = runner.invoke(app, ["zoo", "calibrate", "vae", "nope"])
    assert result.exit_code == 2 and "unknown zoo model 'nope'" in result.output
    assert not (tmp_path / "zoo-calibration").exists()
