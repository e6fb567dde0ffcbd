"""fit / attribute / evaluate end to end on tiny synthetic texture folders with the spectrum backbone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from imgorigin.cli import app
from imgorigin.images import save_png
from imgorigin.records import read_records

SIZE = 32


def texture(kind: str, gen: torch.Generator) -> torch.Tensor:
    """One grey [1, 32, 32] image whose frequency content depends on the kind of 'source'."""
    noise = torch.rand(1, 1, SIZE, SIZE, generator=gen)
    if kind == "real":  # smooth: noise blurred by a 5x5 box
        image = F.avg_pool2d(F.pad(noise, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    elif kind == "blocky":  # nearest-neighbour 2x up-sampling
        image = F.interpolate(noise[..., ::2, ::2], scale_factor=2, mode="nearest")
    elif kind == "white":  # untouched white noise
        image = noise
    else:  # "stripes": a period-4 pattern under noise, for a source nobody trained on
        stripes = torch.sin(torch.arange(SIZE) * torch.pi / 2).view(1, 1, 1, SIZE)
        image = 0.5 + 0.3 * stripes + 0.2 * (noise - 0.5)
    return image[0].clamp(0, 1)


def make_folders(root: Path, kinds: list[str], per_kind: int, seed: int) -> Path:
    gen = torch.Generator().manual_seed(seed)
    for kind in kinds:
        (root / kind).mkdir(parents=True)
        for i in range(per_kind):
            save_png(texture(kind, gen), root / kind / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("attribution")
    make_folders(base / "train", ["real", "blocky", "white"], 12, seed=0)
    make_folders(base / "test", ["real", "blocky", "white"], 6, seed=1)
    make_folders(base / "unknown", ["stripes"], 6, seed=2)
    make_folders(base / "unknown2", ["stripes"], 3, seed=3)
    return base


@pytest.fixture(scope="module")
def fitted(data):
    """A linear probe on the spectrum's radial profile, fitted once through the CLI."""
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "fit",
            str(data / "train"),
            "--out",
            str(data / "clf"),
            "--backbone",
            "spectrum",
            "--layer",
            "radial",
            "--rejection",
            "mahalanobis",
            "--cache-dir",
            str(data / "cache"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    return data / "clf"


def test_fit_writes_a_described_classifier(fitted):
    info = json.loads((fitted / "classifier.json").read_text())
    assert info["classes"] == ["blocky", "real", "white"]
    assert info["kind"] == "linear" and info["params"]["rejection"] == "mahalanobis"
    assert info["backbone"]["name"] == "spectrum" and info["backbone"]["layer"] == "radial"
    assert info["training"]["train_counts"] == {"blocky": 12, "real": 12, "white": 12}
    assert info["accept_rate"] == 0.95 and np.isfinite(info["threshold"])
    assert "held out as unknown" in info["selection"]


def test_attribute_records_resume_and_errors(fitted, data, tmp_path):
    runner = CliRunner()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "results.jsonl"
    args = [
        "attribute",
        str(fitted),
        str(data / "test"),
        str(data / "unknown"),
        str(broken),
        "--output",
        str(out),
        "--cache-dir",
        str(data / "cache"),
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1  # one unreadable image
    records = read_records(out)
    assert len(records) == 18 + 6 + 1
    good = [r for r in records if "error" not in r]
    assert {"path", "sha256", "label", "known", "confidence", "scores"} <= set(good[0])
    assert set(good[0]["scores"]) == {"blocky", "real", "white"}
    assert abs(sum(good[0]["scores"].values()) - 1) < 1e-9
    truth = {r["path"]: Path(r["path"]).parent.name for r in good}
    test_hits = [r["label"] == truth[r["path"]] for r in good if "/test/" in r["path"]]
    stripes_rejected = [r["label"] == "unknown" and not r["known"] for r in good if "/unknown/" in r["path"]]
    assert np.mean(test_hits) >= 0.8 and np.mean(stripes_rejected) >= 0.8
    assert [r for r in records if "error" in r] == [{"path": str(broken), "error": records[-1]["error"]}]

    again = runner.invoke(app, args)  # resumed: only the failed image is tried again
    assert again.exit_code == 1 and "24 of 25 images already answered" in again.stderr
    latest = {r["path"]: r for r in read_records(out)}
    assert len(latest) == 25 and "error" in latest[str(broken)]

    to_stdout = runner.invoke(
        app,
        [
            "attribute",
            str(fitted),
            str(data / "unknown2"),
            "--threshold",
            "-1e9",
            "--cache-dir",
            str(data / "cache"),
            "--device",
            "cpu",
        ],
    )
    assert to_stdout.exit_code == 0
    printed = [json.loads(line) for line in to_stdout.stdout.splitlines()]
    assert len(printed) == 3 and all(r["known"] and r["threshold"] == -1e9 for r in printed)


def test_evaluate_metrics_and_report(fitted, data, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(fitted),
            "--known",
            str(data / "test"),
            "--unknown",
            str(data / "unknown" / "stripes"),
            str(data / "unknown2" / "stripes"),
            "--output",
            str(tmp_path / "metrics.json"),
            "--report",
            str(tmp_path / "report"),
            "--cache-dir",
            str(data / "cache"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("closed_set_accuracy", "auroc", "oscr", "tpr_at_5_fpr"):
        assert 0.8 <= metrics[key] <= 1.0, key
    assert metrics["oscr"] <= metrics["closed_set_accuracy"] + 1e-12
    assert metrics["n_images"] == {"known": 18, "unknown": 9} and metrics["errors"] == []
    assert set(metrics["per_class"]) == {"blocky", "real", "white"}
    assert metrics["per_unknown_source"]["stripes"]["n"] == 9  # both folders are named "stripes"
    matrix = np.array(metrics["confusion_matrix"]["rows_true_columns_predicted"])
    assert metrics["confusion_matrix"]["labels"] == ["blocky", "real", "white", "unknown"]
    assert matrix.sum() == 27 and matrix[3].sum() == 9
    for name in ("roc.png", "confusion.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_with_a_tiny_clip_and_knn(data, tmp_path):
    import transformers

    torch.manual_seed(0)
    config = transformers.CLIPVisionConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8
    )
    transformers.CLIPVisionModel(config).save_pretrained(tmp_path / "clip")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "fit",
            str(data / "train"),
            "--out",
            str(tmp_path / "clf"),
            "--backbone",
            f"clip:{tmp_path / 'clip'}",
            "--layer",
            "1",
            "--classifier",
            "knn",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "clf" / "classifier.json").read_text())
    assert info["kind"] == "knn" and info["backbone"]["layer"] == "1"
    assert info["backbone"]["id"].startswith("clip@")


def test_usage_errors_exit_2(data, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(
        app, ["fit", str(data / "train"), "--out", str(tmp_path / "c"), "--backbone", f"clip:{tmp_path / 'nowhere'}"]
    )
    assert missing.exit_code == 2 and "huggingface-cli download" in missing.stderr
    flat = runner.invoke(
        app, ["fit", str(data / "unknown" / "stripes"), "--out", str(tmp_path / "c"), "--backbone", "spectrum"]
    )
    assert flat.exit_code == 2 and "sub-folder" in flat.stderr


def test_every_option_has_help_and_rejections_match_the_library():
    import typer

    from imgorigin.attribution.openset import REJECTIONS
    from imgorigin.cli.attribute import Rejection

    assert tuple(r.value for r in Rejection) == REJECTIONS
    group = typer.main.get_command(app)
    for name in ("fit", "attribute", "evaluate"):
        for param in group.commands[name].params:
            assert getattr(param, "help", None), f"{name} {param.name}"


def test_bench_attribute_rotates_unknowns_and_tabulates(tmp_path):
    root = make_folders(tmp_path / "zoo", ["real", "blocky", "white", "stripes"], 10, seed=4)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "bench",
            "attribute",
            str(root),
            "--out",
            str(tmp_path / "bench"),
            "--backbone",
            "spectrum",
            "--layers",
            "radial,grid",
            "--rejections",
            "msp,knn",
            "--shots",
            "1,5,all,50",
            "--n-unknown",
            "1",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "skipping 50 shots" in result.stderr  # 7 training images per source: 10 minus 3 for testing
    report = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert report["config"]["splits"] == [["blocky"], ["stripes"], ["white"]]  # real stays known
    rows = report["rows"]
    assert len(rows) == 3 * 3 * 2 * 2 * 2  # splits x shots x layers x classifiers x rejections
    assert {r["n_train"] for r in rows} == {3, 15, 21} and {r["n_test_known"] for r in rows} == {9}
    assert {r["n_test_unknown"] for r in rows} == {10}
    full = [r for r in rows if r["shots"] == "all" and r["layer"] == "radial" and r["rejection"] == "knn"]
    assert np.mean([r["closed_set_accuracy"] for r in full]) >= 0.9 and np.mean([r["auroc"] for r in full]) >= 0.8
    table = (tmp_path / "bench" / "results.md").read_text().splitlines()
    assert table[2].startswith("| layer | classifier | rejection | shots | splits |")
    assert len(table) == 4 + 3 * 2 * 2 * 2 and "| radial | linear | msp | 1 | 3 |" in table[4]
