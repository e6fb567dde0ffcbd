"""`imgorigin calibrate` then `imgorigin verify` end to end, on a TorchScript model written in a temp dir."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from imgorigin.cli import app
from imgorigin.images import save_png
from imgorigin.verification import load_generator
from tiny_models import TinyGenerator, real_like, save_torchscript

FAST = ["--steps", "150", "--restarts", "2", "--patience", "30", "--batch-size", "32"]


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
        ],
    )
    assert result.exit_code == 0, result.output
    return root


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_calibration_file(setup):
    data = json.loads((setup / "cal.json").read_text())
    assert data["n"] == 40 and data["inversion"]["steps"] == 150 and data["model"]["image_shape"] == [1, 16, 16]
    assert data["source"] == "generated" and len(data["model"]["weight_hash"]) == 64


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
    records = _records(out)
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
    assert again.exit_code == 1 and "resuming: 24 of 25" in again.output
    assert len(_records(out)) == len(records) + 1


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


def test_help_documents_every_option():
    for command in ("calibrate", "verify"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert "--calibration" in result.output or command == "calibrate"
