"""The open-set attribution robustness benchmark: fitted once on pristine zoo images, evaluated per grid point
(spectrum backbone, the zoo's fast generators, a few images)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from imgorigin import zoo
from imgorigin.attribution.attributor import Attributor
from imgorigin.attribution.evaluation import evaluate
from imgorigin.benchmarks import robustness, robustness_attribution
from imgorigin.cli import app
from imgorigin.errors import ImgoriginError
from imgorigin.images import save_png
from imgorigin.zoo import data

KNOWN, UNKNOWN = ["dcgan", "vae"], ["wgangp", "dcgan-twin"]
N_TRAIN, N_TEST = 8, 4
GRID = robustness.parse_grid("none,jpeg:75,scaled:2,noise:0.05")
OPTIONS = {"backbone": "spectrum", "layer": "grid", "classifier": "linear", "rejection": "msp", "seed": 0}


def _run(out: Path, cache: Path, *, grid=GRID, n_test: int = N_TEST, **options):
    return robustness_attribution.run(
        out,
        grid=grid,
        known=KNOWN,
        unknown=UNKNOWN,
        n_train=N_TRAIN,
        n_test=n_test,
        cache_dir=cache,
        device="cpu",
        real_images=data.subset_images(),
        log=lambda message: None,
        **OPTIONS,
        **options,
    )


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    base = tmp_path_factory.mktemp("robustness-attribution")
    return base, _run(base / "out", base / "cache")


def _shards(cache: Path) -> set[Path]:
    return set((cache / "features").rglob("*.safetensors"))


def test_the_pristine_point_reproduces_the_plain_evaluation_exactly(bench, tmp_path):
    """Sampled, written, fitted and evaluated by hand, as `imgorigin fit` + `imgorigin evaluate` would: the
    'none' row holds the same numbers."""
    real = data.subset_images()
    plain = tmp_path / "plain"
    sets = {
        "train": {"real": real[:N_TRAIN]}
        | {m: zoo.sample(m, N_TRAIN, seed=robustness_attribution.TRAIN_SEED) for m in KNOWN},
        "known": {"real": real[N_TRAIN : N_TRAIN + N_TEST]}
        | {m: zoo.sample(m, N_TEST, seed=robustness_attribution.TEST_SEED) for m in KNOWN},
        "unknown": {m: zoo.sample(m, N_TEST, seed=robustness_attribution.TEST_SEED) for m in UNKNOWN},
    }
    for part, by_source in sets.items():
        for source, images in by_source.items():
            (plain / part / source).mkdir(parents=True)
            for i, image in enumerate(images):
                save_png(image, plain / part / source / f"{i:04d}.png")
    attributor = Attributor.fit(plain / "train", cache_dir=tmp_path / "cache", device="cpu", **OPTIONS)
    folders = {part: {s: sorted((plain / part / s).iterdir()) for s in sets[part]} for part in ("known", "unknown")}
    metrics = evaluate(attributor, folders["known"], folders["unknown"]).metrics
    _, results = bench
    none = results["rows"][0]
    assert none["name"] == "none"
    for key in robustness_attribution.METRICS:
        assert none[key] == metrics[key], key
    assert none["per_unknown_source"] == metrics["per_unknown_source"]
    assert results["settings"]["threshold"] == attributor.classifier.threshold_


def test_every_point_writes_its_files_and_is_measured_on_all_of_them(bench):
    base, results = bench
    out = base / "out"
    assert [row["name"] for row in results["rows"]] == ["none", "jpeg:75", "scaled:2", "noise:0.05"]
    for point, row in zip(GRID, results["rows"], strict=True):
        folder = out / "images" / robustness_attribution.folder_name(point)
        for part, sources in (("known", ["real", *KNOWN]), ("unknown", UNKNOWN)):
            for source in sources:
                files = sorted((folder / part / source).iterdir())
                assert len(files) == N_TEST and {f.suffix for f in files} == {point.suffix}, (point, source)
                with Image.open(files[0]) as image:
                    assert image.size == ((56, 56) if point.kind == "scaled" else (28, 28))
        assert row["n_images"] == {"known": 3 * N_TEST, "unknown": 2 * N_TEST} and row["errors"] == 0
        assert set(row["per_class_accuracy"]) == {"real", *KNOWN} and set(row["per_unknown_source"]) == set(UNKNOWN)
        for key in robustness_attribution.METRICS:
            assert 0 <= row[key] <= 1, (point, key)
        called = row["known_most_often_called"]
        assert called["label"] in {"real", *KNOWN, "unknown"} and 1 / 4 <= called["fraction"] <= 1
    assert {p.name for p in (out / "train").iterdir()} == {"real", *KNOWN}
    assert all(len(list((out / "train" / s).glob("*.png"))) == N_TRAIN for s in ("real", *KNOWN))
    assert results["settings"]["known"] == ["real", *KNOWN] and results["settings"]["training_errors"] == 0


def test_the_label_known_images_are_most_often_given():
    matrix = {"labels": ["a", "b", "unknown"], "rows_true_columns_predicted": [[1, 3, 0], [0, 4, 2], [1, 1, 5]]}
    assert robustness_attribution._most_often_called(matrix, ["a", "b"]) == {"label": "b", "fraction": 0.7}


def test_results_files_and_the_table_have_one_row_per_point(bench):
    base, results = bench
    out = base / "out"
    assert json.loads((out / "results.json").read_text()) == results
    text = (out / "results.md").read_text()
    assert text == robustness_attribution.markdown(results)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| perturbation")]
    assert [line.split(" | ")[0][2:] for line in rows] == [p.name for p in GRID]
    none = results["rows"][0]
    assert rows[0].startswith(f"| none | {100 * none['closed_set_accuracy']:.1f}% | {none['auroc']:.3f} |")
    assert "rejected: wgangp / dcgan-twin" in text and "Backbone `spectrum` (layer `grid`)" in text
    assert (out / "results.png").stat().st_size > 0


def test_a_rerun_embeds_nothing_new_and_gives_the_same_numbers(bench, tmp_path):
    base, results = bench
    before = _shards(base / "cache")
    again = _run(tmp_path / "again", base / "cache")
    assert _shards(base / "cache") == before  # every feature came from the cache
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in results["rows"]]
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in again["rows"]] == strip


def test_bad_settings_are_clear_errors_before_anything_is_written(tmp_path):
    cases = {
        "either known or unknown": {"known": ["dcgan"], "unknown": ["dcgan"]},
        "at least one unknown": {"unknown": []},
        "unknown backbone": {"backbone": "nope"},
        "has no layer": {"layer": "nope"},
        "fewer than n_train + n_test": {"n_train": 150, "n_test": 60},
        "rejection must be one of": {"rejection": "nope"},
    }
    for message, change in cases.items():
        options = {**OPTIONS, "known": KNOWN, "unknown": UNKNOWN, "real_images": data.subset_images(), **change}
        with pytest.raises(ImgoriginError, match=re.escape(message)):  # UsageError or BackboneError
            robustness_attribution.run(tmp_path / "out", grid=GRID, log=lambda m: None, **options)
        assert not (tmp_path / "out").exists(), message


def test_cli_runs_attribution_alone_and_rejects_bad_options(tmp_path):
    runner = CliRunner()
    common = ["bench", "robustness", "--methods", "attribution", "--backbone", "spectrum", "--device", "cpu"]
    tiny = ["--known", "dcgan", "--unknown", "wgangp", "--n-train", "3", "--n-test", "2", "--grid", "none,blur:1"]
    out = tmp_path / "out"
    result = runner.invoke(app, [*common, *tiny, "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert (out / "results.json").is_file() and not (out / "attribution").exists()
    assert "| blur:1 |" in result.stdout and "blur:1: accuracy" in result.stderr
    cases = {
        "--methods: sepia not among verification, attribution": ["--methods", "sepia"],
        "--methods: nothing given": ["--methods", ","],
        "--known: unknown zoo model(s) nope": ["--known", "nope"],
        "--unknown: unknown zoo model(s) nope": ["--unknown", "nope"],
        "dcgan: a source is either known or unknown": ["--known", "dcgan", "--unknown", "dcgan"],
        "--grid: unknown perturbation 'sepia'": ["--grid", "sepia:3"],
        "--classifier: 'svm' not among linear, knn": ["--classifier", "svm"],
        "--rejection: 'nope' not among": ["--rejection", "nope"],
        "unknown backbone 'nope'": ["--backbone", "nope"],
        "has no layer 'nope'": ["--layer", "nope"],
    }
    for message, args in cases.items():
        bad = tmp_path / "bad"
        result = runner.invoke(app, [*common, *tiny, "--out", str(bad), *args])
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output and not bad.exists(), args


def test_cli_keeps_verification_the_default_and_puts_attribution_beside_it(tmp_path, monkeypatch):
    calls = []

    def fake_verification(models, out, **options):
        calls.append((models, options["others"], options["n_members"]))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "results.md").write_text("verification table\n")

    monkeypatch.setattr(robustness, "run", fake_verification)
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "robustness", "--out", str(tmp_path / "v"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert calls == [(["dcgan", "vae"], ["dcgan", "vae", "wgangp", "ldm"], 30)]
    assert result.stdout == "verification table\n\n" and not (tmp_path / "v" / "attribution").exists()
    both = [
        *("bench", "robustness", "--methods", "verification,attribution", "--out", str(tmp_path / "b")),
        *("--backbone", "spectrum", "--known", "vae", "--unknown", "dcgan", "--n-train", "3", "--n-test", "2"),
        *("--grid", "none", "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"),
    ]
    result = runner.invoke(app, both)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "attribution" / "results.json").is_file() and len(calls) == 2
    assert "verification table" in result.stdout and "| none |" in result.stdout


def test_confirm_gives_two_stage_answers_with_the_verifiers_rules(tmp_path):
    """--confirm: the known generators bound to their zoo models; resized members get no confident label."""
    grid = robustness.parse_grid("none,resize:0.5")
    results = _run(tmp_path / "out", tmp_path / "cache", grid=grid, n_test=3, confirm=True)
    none, resized = results["rows"]
    assert results["settings"]["mode"] == "two-stage" and results["settings"]["alpha"] == 0.05
    for row in (none, resized):
        assert sum(row["rules"].values()) == 3 * 3 + 2 * 3 and row["verifications"] >= 2 * 3
    # pristine: both bound generators' own samples are confirmed by their models
    assert none["per_class_accuracy"]["dcgan"] == 1 and none["per_class_accuracy"]["vae"] == 1
    # resized 0.5x and back: the DCGAN's verifier calls its own members inconclusive (smoother_than_model), so no
    # DCGAN sample is given a label by verification
    assert resized["per_class_accuracy"]["dcgan"] == 0 and resized["rules"].get("conflict", 0) >= 3
    text = (tmp_path / "out" / "results.md").read_text()
    assert "Two-stage (`--confirm`)" in text and text.count("| resize:0.5 |") == 1
