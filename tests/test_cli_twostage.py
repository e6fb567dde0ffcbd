"""fit --bind, attribute --confirm and evaluate --confirm end to end: tiny generators, spectrum features."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from imgorigin.cli import app
from imgorigin.images import save_png
from imgorigin.records import read_records
from imgorigin.verification import load_generator
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import calibrate
from tiny_models import TinyGenerator, real_like, save_torchscript

FAST = InversionConfig(steps=150, restarts=2, patience=30, batch_size=32, search_candidates=8)
N_TRAIN, N_TEST = 12, 6
SEEDS = {"a": 0, "b": 1, "c": 9}  # a and b are bound classes; c is a generator nobody bound or trained on


def _save_images(images, folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        save_png(image, folder / f"{i:02d}.png")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny models gain nothing from more, and on a busy machine extra threads wait (20x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """train/{a,b,real}, test/{a,b,real}, unknown/c, a.pt/b.pt with calibrations, c.pt; a fitted, bound CLF."""
    root = tmp_path_factory.mktemp("cli_twostage")
    for name, seed in SEEDS.items():
        save_torchscript(TinyGenerator(seed=seed), root / f"{name}.pt")
        generator = load_generator(str(root / f"{name}.pt"))
        if name != "c":
            calibrate(generator, 40, config=FAST, learned_init=False).save(root / f"{name}.cal.json")
            _save_images(generator.sample(N_TRAIN, seed=100 + seed), root / "train" / name)
            _save_images(generator.sample(N_TEST, seed=200 + seed), root / "test" / name)
        else:
            _save_images(generator.sample(N_TEST, seed=200 + seed), root / "unknown" / name)
    _save_images(real_like(N_TRAIN, seed=1), root / "train" / "real")
    _save_images(real_like(N_TEST, seed=2), root / "test" / "real")
    result = _run(
        "fit",
        root / "train",
        "--out",
        root / "clf",
        "--backbone",
        "spectrum",
        "--layer",
        "radial",
        "--bind",
        f"a={root / 'a.pt'}@{root / 'a.cal.json'}",
        "--bind",
        f"b={root / 'b.pt'}@{root / 'b.cal.json'}",
        cache=root / "cache",
    )
    assert result.exit_code == 0, result.output
    assert "bound: a, b" in result.stderr
    return root


def _run(*args, cache: Path):
    """Invoke the CLI on CPU with a test-local cache."""
    return CliRunner().invoke(app, [*map(str, args), "--cache-dir", str(cache), "--device", "cpu"])


def test_fit_bind_writes_bindings_and_checks_them(world, tmp_path):
    bindings = json.loads((world / "clf" / "bindings.json").read_text())
    assert bindings == {
        label: {"model": str(world / f"{label}.pt"), "calibration": str(world / f"{label}.cal.json")}
        for label in ("a", "b")
    }
    uncalibrated = _run(
        "fit",
        world / "train",
        "--out",
        tmp_path / "x",
        "--backbone",
        "spectrum",
        "--bind",
        f"a={world / 'a.pt'}",
        cache=tmp_path,
    )
    assert uncalibrated.exit_code == 2 and "give its calibration" in uncalibrated.stderr
    assert not (tmp_path / "x").exists()  # refused before fitting
    stranger = _run(
        "fit",
        world / "train",
        "--out",
        tmp_path / "y",
        "--backbone",
        "spectrum",
        "--bind",
        f"c={world / 'c.pt'}@{world / 'a.cal.json'}",
        cache=world / "cache",
    )
    assert stranger.exit_code == 2 and "not a class" in stranger.stderr


def test_attribute_confirm_verifies_bound_and_rejects_unbound(world, tmp_path):
    out = tmp_path / "records.jsonl"
    result = _run(
        "attribute",
        world / "clf",
        world / "test" / "a",
        world / "unknown" / "c",
        "--confirm",
        "--output",
        out,
        cache=world / "cache",
    )
    assert result.exit_code == 0, result.output
    records = read_records(out)
    bound = [r for r in records if "/test/" in r["path"]]  # records come in the order images are decided
    unbound = [r for r in records if "/unknown/" in r["path"]]
    assert len(records) == 2 * N_TEST
    assert all(len(r["sha256"]) == 64 and r["backbone"] == "spectrum-v1" and r["layer"] == "radial" for r in records)
    confirmed = [r for r in bound if r["label"] == "a" and r["rule"] == "verification"]
    assert len(confirmed) >= N_TEST - 2  # conformal at alpha 0.05 on 40 calibration images: a miss is allowed
    assert all(0.05 < r["verification"]["a"]["p_value"] <= 1 for r in confirmed)
    assert all(r["label"] == "unknown" for r in bound if r not in confirmed)
    # the features take c for a; verification against a and b rejects it
    assert sum(r["features"]["label"] == "a" for r in unbound) >= N_TEST - 1
    assert all(r["label"] == "unknown" and r["rule"] == "rejected" and not r["known"] for r in unbound)
    assert all(r["verification"][label]["p_value"] <= 0.05 for r in unbound for label in ("a", "b"))
    again = _run("attribute", world / "clf", world / "test" / "a", "--confirm", "--output", out, cache=world / "cache")
    assert again.exit_code == 0 and f"{N_TEST} of {N_TEST} images already answered" in again.stderr


def test_attribute_confirm_without_bindings_is_a_usage_error(world, tmp_path):
    shutil.copytree(world / "clf", tmp_path / "clf")
    (tmp_path / "clf" / "bindings.json").unlink()
    result = _run("attribute", tmp_path / "clf", world / "test" / "a", "--confirm", cache=world / "cache")
    assert result.exit_code == 2 and "imgorigin bind" in result.stderr
    plain = _run("attribute", tmp_path / "clf", world / "test" / "a", cache=world / "cache")
    records = [json.loads(line) for line in plain.stdout.splitlines()]
    assert plain.exit_code == 0 and len(records) == N_TEST and all("rule" not in r for r in records)


def test_evaluate_two_stage_and_features_on_the_same_data(world, tmp_path):
    args = ["evaluate", world / "clf", "--known", world / "test", "--unknown", world / "unknown" / "c"]
    # the tiny models make near-white noise: every smooth 'real' test image has less fine detail than any of their
    # images and would be 'inconclusive' (smoother_than_model); this test is about the two-stage rules, so it is off
    confirm = _run(
        *args,
        "--confirm",
        "--detail-alpha",
        "0",
        "--output",
        tmp_path / "two.json",
        "--report",
        tmp_path / "report",
        cache=world / "cache",
    )
    plain = _run(*args, "--output", tmp_path / "one.json", cache=world / "cache")
    assert confirm.exit_code == 0, confirm.output
    assert plain.exit_code == 0, plain.output
    two, one = (json.loads((tmp_path / name).read_text()) for name in ("two.json", "one.json"))
    assert two["mode"] == "two-stage" and one["mode"] == "features"
    for metrics in (two, one):
        for key in ("closed_set_accuracy", "auroc", "oscr", "tpr_at_5_fpr", "known_accepted", "unknown_rejected"):
            assert 0.0 <= metrics[key] <= 1.0, key
        assert metrics["n_images"] == {"known": 3 * N_TEST, "unknown": N_TEST}
    assert set(two["images_per_second"]) == {"features", "two-stage"} and set(one["images_per_second"]) == {"features"}
    assert all(speed > 0 for speed in two["images_per_second"].values())
    rules = two["two_stage"]["rules"]
    assert sum(rules.values()) == 4 * N_TEST and rules["rejected"] >= N_TEST and rules["verification"] >= 2 * N_TEST - 4
    assert two["two_stage"]["bound"] == {"a": str(world / "a.pt"), "b": str(world / "b.pt")}
    # an image no model accepts was verified against both bound models; an accepted one against one or two
    unaccepted = sum(rules.values()) - rules["verification"]
    assert 2 * unaccepted + rules["verification"] <= two["two_stage"]["verifications"] <= 2 * 4 * N_TEST
    # the features take the unseen generator for a known one; verification rejects all of it
    assert one["unknown_rejected"] <= 1 / N_TEST and two["unknown_rejected"] == 1.0
    assert two["per_unknown_source"]["c"] == {"n": N_TEST, "rejected": 1.0, "most_often_taken_for": None}
    assert two["auroc"] >= 0.9 and two["auroc"] > one["auroc"]
    assert two["confusion_matrix"]["labels"][:4] == ["a", "b", "real", "unknown"]
    assert "two_stage" not in one
    for name in ("roc.png", "confusion.png"):
        assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_attribute_confirm_adds_timed_two_stage_rows(world, tmp_path):
    for folder in [*(world / "train").iterdir(), world / "unknown" / "c"]:
        shutil.copytree(folder, tmp_path / "zoo" / folder.name)
    result = _run(
        "bench",
        "attribute",
        tmp_path / "zoo",
        "--out",
        tmp_path / "bench",
        "--backbone",
        "spectrum",
        "--layers",
        "radial",
        "--classifiers",
        "linear",
        "--rejections",
        "msp",
        "--shots",
        "all",
        "--n-unknown",
        "1",
        "--confirm",
        "--bind",
        f"a={world / 'a.pt'}@{world / 'a.cal.json'}",
        "--bind",
        f"b={world / 'b.pt'}@{world / 'b.cal.json'}",
        cache=world / "cache",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert report["config"]["splits"] == [["a"], ["b"], ["c"]] and len(report["rows"]) == 3
    rows = report["two_stage_rows"]
    assert [(r["split"], r["mode"]) for r in rows] == [(i, m) for i in range(3) for m in ("features", "two-stage")]
    assert all(r["seconds_per_image"] > 0 and 0 <= r["auroc"] <= 1 for r in rows)
    features, two_stage = rows[4:]  # the split where the unseen generator c is the unknown
    assert features["unknown_rejected"] <= 1 / 6 and two_stage["unknown_rejected"] == 1.0
    assert two_stage["rules"]["rejected"] >= features["n_test_unknown"] == 6
    table = (tmp_path / "bench" / "results.md").read_text().splitlines()
    assert table[-4].startswith("| mode | layer | classifier | rejection | shots | splits |")
    assert table[-4].endswith("| s/image |") and table[-1].startswith("| two-stage | radial | linear | msp | all | 3 |")
    unbound = _run("bench", "attribute", tmp_path / "zoo", "--out", tmp_path / "x", "--confirm", cache=tmp_path)
    assert unbound.exit_code == 2 and "--bind" in unbound.stderr


def test_two_stage_attribute_paths_in_python_and_unreadable_files(world, tmp_path):
    from imgorigin.attribution.attributor import Attributor
    from imgorigin.twostage import Bindings, TwoStageAttributor

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    attributor = Attributor.load(world / "clf", cache_dir=world / "cache", device="cpu")
    two_stage = TwoStageAttributor(attributor, Bindings.load(world / "clf"), device="cpu", cache_dir=world / "cache")
    records = list(two_stage.attribute_paths([world / "test" / "a", broken]))
    assert len(records) == N_TEST + 1 and records[-1] == {"path": str(broken), "error": records[-1]["error"]}
    assert all(r["backbone"] == "spectrum-v1" and len(r["sha256"]) == 64 and "rule" in r for r in records[:-1])
    out = tmp_path / "records.jsonl"
    result = _run(
        "attribute", world / "clf", world / "test" / "a", broken, "--confirm", "-o", out, cache=world / "cache"
    )
    assert result.exit_code == 1 and "7 images: 6 scored, 1 unreadable, 0 skipped" in result.stderr
    cli = read_records(out)
    assert [(r["path"], r.get("label")) for r in cli] == [(r["path"], r.get("label")) for r in records]
