"""The training-free fast path (double reconstruction) and screening, on a tiny autoencoder built here."""

from __future__ import annotations

import functools
import hashlib
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from typer.testing import CliRunner

from imgorigin.cli import app
from imgorigin.errors import UsageError
from imgorigin.images import quantize_8bit, save_png
from imgorigin.verification import Calibration, CalibrationError, InversionConfig, Verifier, calibrate
from imgorigin.verification.fastpath import FAST, INVERSION, FastConfig, double_reconstruction, glcm_homogeneity
from imgorigin.verification.generators.torch_module import ModuleGenerator
from tiny_models import LATENT, TinyGenerator, real_like, save_torchscript

INVERT = InversionConfig(steps=60, restarts=2, patience=20, batch_size=32)


@functools.cache
def tiny_autoencoder() -> ModuleGenerator:
    """TinyGenerator's decoder plus a linear encoder fitted by least squares to 2000 of its samples (seeded; no
    training loop): a nonlinear autoencoder whose own images lie on its decoder's manifold."""
    decoder = TinyGenerator(seed=0).eval()
    with torch.no_grad():
        z = torch.randn(2000, LATENT, generator=torch.Generator().manual_seed(0))
        x = ((decoder(z) + 1) / 2).flatten(1)
        solution = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1)], 1), z, driver="gelsd").solution
    linear = nn.Linear(x.shape[1], LATENT)
    linear.weight.data, linear.bias.data = solution[:-1].T.contiguous(), solution[-1].clone()
    return ModuleGenerator(decoder, (LATENT,), id="tiny-autoencoder", encoder=nn.Sequential(nn.Flatten(), linear))


def other_images(n: int, seed: int) -> torch.Tensor:
    return quantize_8bit(ModuleGenerator(TinyGenerator(seed=5), (LATENT,)).sample(n, seed=seed))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast")
    gen = tiny_autoencoder()
    folders = {"members": gen.sample(8, seed=100), "other": other_images(6, 101), "real": real_like(6, seed=102)}
    for name, images in folders.items():
        (root / name).mkdir()
        for i, image in enumerate(images):
            save_png(image, root / name / f"{i:02d}.png")
    fast_cal = calibrate(gen, 200, config=FastConfig(), seed=1)
    inv_cal = calibrate(gen, 30, config=INVERT, seed=1)
    fast_cal.save(root / "fast.json")
    inv_cal.save(root / "inv.json")
    save_torchscript(TinyGenerator(seed=0), root / "no_encoder.pt")
    return root, gen, fast_cal, inv_cal


def test_glcm_homogeneity_matches_the_matrix_definition():
    flat = torch.full((1, 1, 8, 8), 0.5)
    stripes = torch.zeros(1, 1, 8, 8)
    stripes[..., 1::2] = 1.0  # grey levels 0 and 31 alternate along every row
    assert glcm_homogeneity(flat)[0] == 1.0
    assert glcm_homogeneity(stripes)[0] == pytest.approx(1 / (1 + 31**2))
    # against the symmetric, normalised 32-level GLCM (distance 1, angle 0) built as a matrix
    image = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(3))
    codes = (image.clamp(0, 1) * 255).round()
    grey = (0.299 * codes[0, 0] + 0.587 * codes[0, 1] + 0.114 * codes[0, 2]).round().numpy().astype(int) // 8
    glcm = np.zeros((32, 32))
    np.add.at(glcm, (grey[:, :-1].ravel(), grey[:, 1:].ravel()), 1)
    glcm = glcm + glcm.T
    glcm /= glcm.sum()
    i, j = np.indices(glcm.shape)
    assert glcm_homogeneity(image)[0] == pytest.approx(float((glcm / (1 + (i - j) ** 2)).sum()))


def test_members_and_other_images_separate():
    gen = tiny_autoencoder()
    members = quantize_8bit(gen.sample(30, seed=2))
    own = double_reconstruction(gen, members)
    assert 0.5 < float(np.median(own.first / own.second)) < 2  # a member loses as much on both trips
    labels = np.r_[np.zeros(30), np.ones(30)]
    for others in (other_images(30, 3), real_like(30, seed=4)):
        fast = double_reconstruction(gen, others)
        assert float(np.median(fast.first / fast.second)) > 20  # pulled onto the manifold on the first trip
        assert roc_auc_score(labels, np.r_[own.scores, fast.scores]) == 1.0


def test_fast_calibration_is_its_own_kind(setup, tmp_path):
    root, gen, fast_cal, inv_cal = setup
    assert fast_cal.method == FAST and fast_cal.fast == FastConfig() and inv_cal.method == INVERSION
    loaded = Calibration.load(root / "fast.json")
    assert loaded.method == FAST and loaded.digest() == fast_cal.digest()
    assert json.loads((root / "fast.json").read_text())["inversion"] is None
    # an inversion calibration's file and digest are what they were before calibrations had a method
    data = json.loads((root / "inv.json").read_text())
    assert "method" not in data and "fast" not in data
    kept = {"model": data["model"], "inversion": data["inversion"], "scores": data["scores"], "reference_scores": None}
    assert inv_cal.digest() == hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()
    # the same scores as the other kind give another digest
    as_inversion = Calibration(gen.id, fast_cal.weight_hash, fast_cal.image_shape, InversionConfig(), fast_cal.scores)
    assert as_inversion.digest() != fast_cal.digest()
    assert fast_cal.floor == 0.0  # ratios are not compared at the 8-bit MSE floor
    with pytest.raises(CalibrationError, match="--method fast"):
        Verifier(gen, inv_cal, method="fast", detail_alpha=None)
    with pytest.raises(CalibrationError, match="made with `imgorigin calibrate MODEL`"):
        Verifier(gen, fast_cal, method="inversion", detail_alpha=None)
    with pytest.raises(CalibrationError):
        Verifier(gen, fast_cal, method="screen", fast_calibration=inv_cal, detail_alpha=None)
    with pytest.raises(UsageError, match="fast calibration"):
        Verifier(gen, inv_cal, method="screen", detail_alpha=None)
    assert Verifier(gen, fast_cal, detail_alpha=None).method == "fast"  # the calibration's own method by default


def test_fast_records_have_the_inversion_fields(setup, tmp_path):
    root, gen, fast_cal, inv_cal = setup
    fast = Verifier(gen, fast_cal, cache_dir=tmp_path)
    inverted = Verifier(gen, inv_cal, cache_dir=tmp_path)
    fast_records = list(fast.verify_paths([root / "members", root / "other", root / "real"]))
    inv_record = next(inverted.verify_paths([root / "members" / "00.png"]))
    assert set(inv_record) <= set(fast_records[0])
    assert set(fast_records[0]) - set(inv_record) == {"score_parts"}
    assert {r["method"] for r in fast_records} == {"aedr-double-reconstruction"}
    assert inv_record["method"] == "ronan-inversion" and "p_value_detail" in fast_records[0]
    verdicts = {r["path"].split("/")[-2]: set() for r in fast_records}
    for r in fast_records:
        verdicts[r["path"].split("/")[-2]].add(r["verdict"])
    # the fine-detail check applies to the fast path too: the blurred stand-ins for photos are smoother than the
    # model's own images, so no verdict
    assert verdicts == {"members": {"member"}, "other": {"non-member"}, "real": {"inconclusive"}}
    assert all("smoother_than_model" in r["reasons"] for r in fast_records if "/real/" in r["path"])
    parts = fast_records[0]["score_parts"]
    assert fast_records[0]["score"] == pytest.approx(parts["first"] / (parts["second"] + 1e-12) * parts["homogeneity"])
    assert fast.stats == {"fast": 20, "inversion": 0}
    # cached by method: a second run scores nothing, and the two kinds of score have separate cache files
    again = list(Verifier(gen, fast_cal, cache_dir=tmp_path).verify_paths([root / "members"]))
    assert all(r["cached"] for r in again) and again[0]["score_parts"] == fast_records[0]["score_parts"]
    assert len(list((tmp_path / "scores").glob("*.jsonl"))) == 2


def test_screen_inverts_only_what_the_fast_score_cannot_reject(setup, tmp_path):
    root, gen, fast_cal, inv_cal = setup
    verifier = Verifier(gen, inv_cal, method="screen", fast_calibration=fast_cal, cache_dir=tmp_path)
    assert verifier.screen_reject == pytest.approx(0.01)  # alpha / 5
    fast_p = {
        r["path"]: r["p_value"]
        for r in Verifier(gen, fast_cal, detail_alpha=None).verify_paths(
            [root / "members", root / "other", root / "real"]
        )
    }
    records = list(verifier.verify_paths([root / "members", root / "other", root / "real"]))
    stages = {r["path"]: r["screen"]["stage"] for r in records}
    expected = {path: "fast" if p <= 0.01 else "inversion" for path, p in fast_p.items()}
    assert stages == expected
    assert sum(s == "inversion" for s in stages.values()) == verifier.stats["inversion"] == 8  # the members only
    assert verifier.stats["fast"] == 12
    for r in records:
        if r["screen"]["stage"] == "inversion":
            assert r["method"] == "ronan-inversion" and r["alpha"] == pytest.approx(0.04)
            assert r["verdict"] == "member" and r["screen"]["p_value_fast"] == fast_p[r["path"]]
        else:  # rejected by the fast score, or smoother than the model (inconclusive whatever the score)
            assert r["method"] == "aedr-double-reconstruction"
            assert r["verdict"] == "non-member" or "smoother_than_model" in r["reasons"]
    # a JPEG file: neither calibration covers its processing, so it is inconclusive at the fast stage, not inverted
    from PIL import Image

    Image.open(root / "members" / "00.png").convert("L").save(tmp_path / "member.jpg", quality=90)
    (jpeg,) = list(verifier.verify_paths([tmp_path / "member.jpg"]))
    assert jpeg["verdict"] == "inconclusive" and "processing_not_calibrated" in jpeg["reasons"]
    assert jpeg["screen"]["stage"] == "fast" and verifier.stats["inversion"] == 8
    identity = verifier.identity()
    assert identity["method"] == "screen" and identity["screen"]["fast_calibration"] == fast_cal.digest()
    with pytest.raises(UsageError):
        Verifier(gen, inv_cal, method="screen", fast_calibration=fast_cal, screen_reject=0.05)


def test_cli_fast_and_screen(setup, tmp_path):
    root, _, _, _ = setup
    runner = CliRunner()
    common = ["--cache-dir", str(tmp_path / "cache"), "--detail-alpha", "0"]
    fast_out = tmp_path / "fast.jsonl"
    result = runner.invoke(
        app,
        ["verify", "test_fastpath:tiny_autoencoder", str(root / "real"), "--method", "fast"]
        + ["-c", str(root / "fast.json"), "-o", str(fast_out), *common],
    )
    assert result.exit_code == 0, result.output
    assert "0 of 6 reached the inversion" in result.output and "images/s" in result.output
    result = runner.invoke(
        app,
        ["verify", "test_fastpath:tiny_autoencoder", str(root / "members"), str(root / "real"), "-c"]
        + [str(root / "inv.json"), "--method", "screen", "--fast-calibration", str(root / "fast.json"), *common],
    )
    assert result.exit_code == 0, result.output
    assert "6 decided by the fast score, 8 of 14 reached the inversion (57.1%)" in result.output


def test_cli_fast_needs_an_encoder(setup, tmp_path):
    root, _, _, _ = setup
    runner = CliRunner()
    model = str(root / "no_encoder.pt")
    result = runner.invoke(
        app, ["verify", model, str(root / "real"), "--method", "fast", "-c", str(root / "fast.json")]
    )
    assert result.exit_code == 2 and "error:" in result.output and "no encoder" in result.output
    result = runner.invoke(app, ["calibrate", model, "--method", "fast", "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and "error:" in result.output and "no encoder" in result.output
    result = runner.invoke(app, ["verify", "test_fastpath:tiny_autoencoder", str(root / "real"), "--method", "fast"])
    assert result.exit_code == 2 and "needs --calibration" in result.output
