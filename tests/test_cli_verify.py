"""`imgorigin calibrate` then `imgorigin verify` end to end, on a TorchScript model written in a temp dir."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import typer
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from imgorigin.cli import app
from imgorigin.cli.options import option_name
from imgorigin.images import save_png
from imgorigin.records import read_records
from imgorigin.verification import Calibration, InversionConfig, load_generator
from imgorigin.verification.initializer import LEARNED_START
from imgorigin.zoo.calibrations import INVERSION_OVERRIDES, inversion_config
from tiny_models import TinyGenerator, real_like, save_torchscript

FAST = ["--steps", "150", "--restarts", "2", "--patience", "30", "--batch-size", "32", "--search-candidates", "8"]
FAST_CONFIG = InversionConfig(steps=150, restarts=2, patience=30, batch_size=32, search_candidates=8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    save_torchscript(TinyGenerator(seed=0), root / "model.pt")
    save_torchscript(TinyGenerator(seed=5), root / "other.pt")
    gen, other = load_generator(str(root / "model.pt")), load_generator(str(root / "other.pt"))
    for name, images in [
        ("members", gen.sample(12, seed=100)),
        ("other", other.sample(6, seed=101)),
        ("real", real_like(6, seed=102)),
    ]:
        (root / "data" / name).mkdir(parents=True)
        for i, img in enumerate(images):
            save_png(img, root / "data" / name / f"{i:03d}.png")
    (root / "data" / "real" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    cache = root / "cache"
    result = CliRunner().invoke(
        app,
        [
            "calibrate",
            str(root / "model.pt"),
            "--samples",
            "40",
            "--out",
            str(root / "cal.json"),
            "--cache-dir",
            str(cache),
            *FAST,
            "--init-steps",
            "200",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "learned initialiser: 200 steps in" in result.output
    return root


def test_calibration_file(setup):
    data = json.loads((setup / "cal.json").read_text())
    assert data["n"] == 40 and data["model"]["image_shape"] == [1, 16, 16]
    assert data["source"] == "generated" and len(data["model"]["weight_hash"]) == 64
    # the generated options reach the file, with the learned start calibrate chose for this encoder-less model
    learned = dataclasses.replace(FAST_CONFIG, init="learned", **LEARNED_START)
    assert Calibration.load(setup / "cal.json").inversion == learned and data["initializer"]["training"]["steps"] == 200


def test_calibrate_offers_every_inversion_setting_with_the_library_default_and_help():
    command = typer.main.get_command(app).commands["calibrate"]
    options = {name: p for p in command.params if p.param_type_name == "option" for name in p.opts}
    for field in dataclasses.fields(InversionConfig):
        option = options[option_name(field.name)]
        assert option.default == field.default, field.name
        if field.name != "seed":  # the command's own --seed: one option for sampling and for the restarts
            assert option.help == field.metadata["help"], field.name
    assert [name for p in command.params for name in p.opts].count("--seed") == 1


def test_calibrate_reproduces_the_shipped_wgangp_inversion_settings(tmp_path):
    overrides = [f"{option_name(k)}={v}" for k, v in INVERSION_OVERRIDES["wgangp"].items()]
    assert overrides == [
        "--restarts=8",
        "--refine-steps=100",
        "--refine-broyden=0",
        "--refine-patience=10",
        "--refine-rel-tol=0.01",
        "--retries=2",
    ]
    out = tmp_path / "wgangp.json"
    args = ["calibrate", "zoo:wgangp", "--samples", "2", "--out", str(out), "--cache-dir", str(tmp_path), *overrides]
    args.append("--no-learned-init")  # the shipped calibrations start from searched latents
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert Calibration.load(out).inversion == inversion_config("wgangp") != InversionConfig()


def test_invalid_settings_and_inputs_are_one_error_line(setup, tmp_path):
    save_png(real_like(1, seed=3)[0], tmp_path / "x.png")
    runner = CliRunner()
    cases = {
        "patience >= 1": ["calibrate", "zoo:vae", "--patience", "0", "--out", str(tmp_path / "c.json")],
        "has no encoder": [
            "calibrate",
            str(setup / "model.pt"),
            "--init",
            "encoder",
            "--out",
            str(tmp_path / "c.json"),
        ],
        "/nonexistent: no such file": ["calibrate", "zoo:vae", "--from-images", "/nonexistent", "--out", "c.json"],
        "/nonexistent: no such file or": [
            "verify",
            "zoo:vae",
            str(tmp_path / "x.png"),
            "--reference-real",
            "/nonexistent",
        ],
    }
    for message, args in cases.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert not (tmp_path / "c.json").exists()
    bad_alpha = runner.invoke(app, ["verify", "zoo:vae", str(tmp_path / "x.png"), "--alpha", "1"])
    assert bad_alpha.exit_code == 2 and "strictly between 0 and 1" in bad_alpha.output


def test_verify_separates_members_records_errors_and_resumes(setup):
    out = setup / "results.jsonl"
    args = [
        "verify",
        str(setup / "model.pt"),
        str(setup / "data"),
        "--calibration",
        str(setup / "cal.json"),
        "--output",
        str(out),
        "--cache-dir",
        str(setup / "cache"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1  # one unreadable image
    records = read_records(out)
    errors = [r for r in records if "error" in r]
    assert len(errors) == 1 and errors[0]["path"].endswith("broken.png") and "broken.png" in errors[0]["error"]
    scored = [r for r in records if "error" not in r]
    assert len(scored) == 24
    is_member = np.array(["members" in r["path"] for r in scored])
    scores = np.array([r["score"] for r in scored])
    assert roc_auc_score(is_member, -scores) >= 0.99
    accepted = np.array([r["belongs"] for r in scored])
    assert accepted[is_member].mean() >= 0.9 and accepted[~is_member].mean() == 0
    first = scored[0]
    for key in (
        "sha256",
        "width",
        "height",
        "format",
        "mode",
        "model",
        "weight_hash",
        "method",
        "version",
        "p_value",
        "p_value_grubbs",
        "verdict",
        "reasons",
        "alpha",
        "threshold",
        "seconds",
    ):
        assert key in first
    # a second run resumes: answered images are skipped, the unreadable one is retried
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "24 of 25 images already answered" in again.output
    assert "25 images: 0 scored, 1 unreadable, 0 skipped, 24 already answered" in again.output
    latest = read_records(out)
    assert len(latest) == 25 and [r["path"] for r in latest if "error" in r] == [errors[0]["path"]]


def test_verify_to_stdout_with_reference_real(setup):
    result = CliRunner().invoke(
        app,
        [
            "verify",
            str(setup / "model.pt"),
            str(setup / "data" / "members" / "000.png"),
            "--calibration",
            str(setup / "cal.json"),
            "--reference-real",
            str(setup / "data" / "real"),
            "--cache-dir",
            str(setup / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.startswith("{"))
    record = json.loads(line)
    # 6 reference images cannot bound the real-image error at 5 %: the verdict says so instead of guessing
    assert record["verdict"] == "inconclusive" and record["p_value_real"] == pytest.approx(1 / 7)
    assert "reference_set_too_small" in record["reasons"] and "give at least 20" in result.output


def test_clear_errors(setup):
    runner = CliRunner()
    wrong = runner.invoke(
        app, ["verify", str(setup / "other.pt"), str(setup / "data"), "--calibration", str(setup / "cal.json")]
    )
    assert wrong.exit_code == 2 and "imgorigin calibrate" in wrong.output
    missing = runner.invoke(app, ["verify", str(setup / "model.pt"), str(setup / "nope")])
    assert missing.exit_code == 2 and "ships no calibration: give its calibration (--calibration CAL" in missing.output
    bad_model = runner.invoke(app, ["calibrate", str(setup / "nothing.pt"), "--out", str(setup / "x.json")])
    assert bad_model.exit_code == 2 and "Accepted" in bad_model.output


def test_calibrate_chooses_retries_unless_told_not_to(setup, tmp_path):
    model = str(setup / "model.pt")
    base = ["calibrate", model, "--samples", "6", "--cache-dir", str(tmp_path), "--steps", "3", "--refine-steps", "0"]
    auto = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "auto.json")])
    assert auto.exit_code == 0, auto.output
    chosen = Calibration.load(tmp_path / "auto.json")
    # 5 Adam steps leave every sample above retry_above: the search ran, rescued none, and kept 0 retries
    assert chosen.retry_search["failed_after_attempt"][0] == 1.0 and chosen.inversion.retries == 0
    assert "retries: 0 chosen" in auto.output
    fixed = CliRunner().invoke(app, [*base, "--auto-retries", "0", "--retries", "1", "--out", str(tmp_path / "f.json")])
    assert fixed.exit_code == 0, fixed.output
    given = Calibration.load(tmp_path / "f.json")
    assert given.inversion.retries == 1 and given.retry_search is None and "retries:" not in fixed.output
