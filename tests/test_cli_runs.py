"""Runs you can trust, through the CLI: a run's identity guards its output, a SIGKILL loses at most the images in
flight, and a fuzz corpus gets exactly one outcome per input from `verify` and `attribute`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgorigin.cli import app
from imgorigin.images import save_png
from imgorigin.records import read_identity, read_records
from imgorigin.verification import calibrate, load_generator
from imgorigin.verification.inversion import InversionConfig
from test_fuzz_inputs import _accounted
from tiny_models import TinyGenerator, real_like, save_torchscript

FAST = InversionConfig(steps=150, restarts=2, patience=30, batch_size=8, search_candidates=8, prune_after=0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    save_torchscript(TinyGenerator(seed=0), root / "model.pt")
    save_torchscript(TinyGenerator(seed=5), root / "other.pt")
    gen = load_generator(str(root / "model.pt"))
    calibrate(gen, 30, config=FAST, learned_init=False).save(root / "cal.json")
    calibrate(gen, 30, config=FAST, seed=1, learned_init=False).save(root / "cal2.json")
    calibrate(load_generator(str(root / "other.pt")), 30, config=FAST, learned_init=False).save(root / "other.cal.json")
    images = root / "images"
    images.mkdir()
    for i, image in enumerate([*gen.sample(20, seed=50), *real_like(20, seed=51)]):
        save_png(image, images / f"{i:03d}.png")
    return root


def _verify(world: Path, *args: object, model: str = "model.pt", cal: str = "cal.json"):
    argv = ["verify", str(world / model), str(world / "images"), "-c", str(world / cal), *map(str, args)]
    return CliRunner().invoke(app, argv)


def test_resume_is_refused_for_another_model_calibration_or_alpha_and_allowed_for_the_same_run(world, tmp_path):
    out = tmp_path / "r.jsonl"
    first = _verify(world, "-o", out)
    assert first.exit_code == 0, first.output
    assert read_identity(out)["alpha"] == 0.05 and len(read_records(out)) == 40
    for changed in (
        {"model": "other.pt", "cal": "other.cal.json"},  # another model
        {"cal": "cal2.json"},  # the same model, another calibration
    ):
        refused = _verify(world, "-o", out, **changed)
        assert refused.exit_code == 2 and "cannot resume" in refused.stderr and "Traceback" not in refused.output
    refused = _verify(world, "-o", out, "--alpha", "0.01")
    assert refused.exit_code == 2 and "alpha (file: 0.05, now: 0.01)" in refused.stderr
    same = _verify(world, "-o", out)
    assert same.exit_code == 0 and "40 of 40 images already answered" in same.stderr
    restarted = _verify(world, "-o", out, "--alpha", "0.01", "--restart")
    assert restarted.exit_code == 0 and read_identity(out)["alpha"] == 0.01
    assert {r["alpha"] for r in read_records(out)} == {0.01} and len(read_records(out)) == 40


def test_sigkill_at_three_moments_then_resume_gives_every_image_once_with_uninterrupted_scores(world, tmp_path):
    env = {**os.environ, "IMGORIGIN_CACHE": str(tmp_path / "cache")}  # a cold cache: nothing is precomputed
    base = [
        sys.executable,
        "-c",
        "from imgorigin.cli import main; main()",
        "verify",
        str(world / "model.pt"),
        str(world / "images"),
    ]
    base += ["-c", str(world / "cal.json")]
    out = tmp_path / "killed.jsonl"
    rng = random.Random(0)
    counts = []
    for _ in range(3):
        child = subprocess.Popen([*base, "-o", str(out)], env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        before = len(read_records(out)) if out.exists() else 0
        while time.monotonic() < deadline and (len(read_records(out)) if out.exists() else 0) <= before:
            time.sleep(0.05)  # kill once this run has written at least one record of its own...
        time.sleep(rng.uniform(0, 0.3))  # ...at a random moment after that
        child.send_signal(signal.SIGKILL)
        child.wait()
        lines = out.read_bytes().splitlines()
        valid = [json.loads(line) for line in lines[:-1]]  # every line but a torn last one is whole JSON
        assert valid and "imgorigin_run" in valid[0]
        counts.append(len(read_records(out)))
    assert counts[0] > 0 and counts == sorted(counts)
    finished = subprocess.run([*base, "-o", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    clean = tmp_path / "clean.jsonl"
    env["IMGORIGIN_CACHE"] = str(tmp_path / "cache-clean")
    subprocess.run([*base, "-o", str(clean)], env=env, check=True, capture_output=True, timeout=300)
    resumed = {r["path"]: r for r in read_records(out)}
    uninterrupted = {r["path"]: r for r in read_records(clean)}
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert len(lines) == 1 + 40 and len({r["path"] for r in lines[1:]}) == 40  # every image exactly once
    assert set(resumed) == set(uninterrupted)
    for path, record in resumed.items():
        # equal up to float rounding: another batch composition sums the same products in another order
        assert record["score"] == pytest.approx(uninterrupted[path]["score"], rel=1e-4, abs=1e-12)
        assert record["verdict"] == uninterrupted[path]["verdict"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from fuzz_corpus import make_corpus

    folder = tmp_path_factory.mktemp("fuzz") / "corpus"
    return folder, make_corpus(folder, n=150, seed=1)


def _outcomes(out: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in out.read_bytes().decode("utf-8").splitlines()]
    assert "imgorigin_run" in lines[0] and len({r["path"] for r in lines[1:]}) == len(lines) - 1
    return {r["path"]: r for r in lines[1:]}


def test_a_fuzz_corpus_through_verify_gets_one_outcome_per_input_and_survives_a_rerun(world, corpus, tmp_path):
    folder, made = corpus
    out = tmp_path / "fuzz.jsonl"
    argv = ["verify", str(world / "model.pt"), str(folder), "-c", str(world / "cal.json"), "-o", str(out)]
    first = CliRunner().invoke(app, argv)
    assert first.exit_code == 1 and "Traceback" not in first.output  # 1: some inputs unreadable
    outcomes = _outcomes(out)
    assert all(_accounted(path, outcomes) for path in made)
    kinds = {("error" in r) + 2 * ("skipped" in r) for r in outcomes.values()}
    assert kinds == {0, 1, 2}  # results, errors and skips
    again = CliRunner().invoke(app, argv)  # errors retried and replaced, skips rewritten: still one line each
    assert again.exit_code == 1 and _outcomes(out).keys() == outcomes.keys()


def test_a_fuzz_corpus_through_attribute(corpus, tmp_path):
    folder, made = corpus
    train = tmp_path / "train"
    for label, seed in (("a", 1), ("b", 2)):
        (train / label).mkdir(parents=True)
        for i, image in enumerate(real_like(6, seed=seed, size=32 if label == "a" else 16)):
            save_png(image, train / label / f"{i}.png")
    clf, out = tmp_path / "clf", tmp_path / "fuzz.jsonl"
    cache = ["--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    fitted = CliRunner().invoke(app, ["fit", str(train), "-o", str(clf), "--backbone", "spectrum", *cache])
    assert fitted.exit_code == 0, fitted.output
    result = CliRunner().invoke(app, ["attribute", str(clf), str(folder), "-o", str(out), *cache])
    assert result.exit_code == 1 and "Traceback" not in result.output
    outcomes = _outcomes(out)
    assert all(_accounted(path, outcomes) for path in made)
    assert any("label" in r for r in outcomes.values()) and any("skipped" in r for r in outcomes.values())


def test_an_empty_folder_is_a_usage_error(tmp_path, world):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        app, ["verify", str(world / "model.pt"), str(tmp_path / "empty"), "-c", str(world / "cal.json")]
    )
    assert result.exit_code == 2 and "no image found" in result.stderr


def test_resuming_a_finished_run_with_skipped_files_leaves_the_file_as_it_is(world, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes((world / "images" / "000.png").read_bytes())
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "r.jsonl"
    argv = ["verify", str(world / "model.pt"), str(folder), "-c", str(world / "cal.json"), "-o", str(out)]
    assert CliRunner().invoke(app, argv).exit_code == 0
    before = (out.stat().st_ino, out.read_bytes())
    again = CliRunner().invoke(app, argv)
    assert again.exit_code == 0 and "1 images: 0 scored, 0 unreadable, 0 skipped, 1 already answered" in again.stderr
    assert (out.stat().st_ino, out.read_bytes()) == before  # not rewritten for an unchanged skip
