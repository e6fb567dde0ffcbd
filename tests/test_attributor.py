"""The library's Attributor: fit, save, load and attribute files, interchangeable with `imgorigin fit`/`attribute`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import numpy as np
import pytest
from typer.testing import CliRunner

from imgorigin.attribution import attributor as attributor_module
from imgorigin.attribution.attributor import Attributor, class_folders
from imgorigin.attribution.features import BackboneError, create_backbone
from imgorigin.attribution.openset import ClassifierError, LinearProbe, OpenSetClassifier
from imgorigin.cli import app
from imgorigin.errors import UsageError
from imgorigin.records import read_records
from test_cli_attribute import make_folders

FIT = {"backbone": "spectrum", "layer": "radial", "rejection": "mahalanobis", "device": "cpu"}
RECORD_FIELDS = [
    "path",
    "sha256",
    "label",
    "known",
    "confidence",
    "scores",
    "best_known",
    "rejection",
    "rejection_score",
    "threshold",
    "backbone",
    "layer",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("attributor")
    make_folders(base / "train", ["real", "blocky", "white"], 10, seed=0)
    make_folders(base / "test", ["real", "blocky", "white", "stripes"], 3, seed=1)
    (base / "broken.png").write_bytes(b"not an image")
    return base


@pytest.fixture(scope="module")
def fitted(data):
    """An attributor fitted from Python and saved."""
    attributor = Attributor.fit(data / "train", cache_dir=data / "cache", **FIT)
    attributor.save(data / "py-clf")
    return attributor


def _cli(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def test_fit_keeps_the_backbone_spec_and_the_training_facts(fitted, data):
    spec, training = fitted.spec, fitted.classifier.training_
    assert (spec.name, spec.id, spec.layer) == ("spectrum", "spectrum-v1", "radial")
    assert training.train_counts == {"blocky": 10, "real": 10, "white": 10}
    assert training.train_dir == str(data / "train") and training.errors == ()
    info = json.loads((data / "py-clf" / "classifier.json").read_text())
    assert info["backbone"] == spec.to_dict() and info["training"]["train_counts"] == training.train_counts


def test_saved_from_python_attributes_through_the_cli(fitted, data, tmp_path):
    out = tmp_path / "records.jsonl"
    result = _cli(
        "attribute", data / "py-clf", data / "test", "-o", out, "--cache-dir", data / "cache", "--device", "cpu"
    )
    assert result.exit_code == 0, result.output
    records = read_records(out)
    assert len(records) == 12 and all(list(r) == RECORD_FIELDS for r in records)
    library = list(fitted.attribute_paths([data / "test"]))
    assert [(r["path"], r["label"]) for r in records] == [(r["path"], r["label"]) for r in library]


def test_cli_fit_loads_in_python_with_the_same_labels(data, tmp_path):
    clf_dir = tmp_path / "cli-clf"
    args = ["--backbone", "spectrum", "--layer", "radial", "--rejection", "mahalanobis", "--device", "cpu"]
    fitted = _cli("fit", data / "train", "--out", clf_dir, *args, "--cache-dir", data / "cache")
    assert fitted.exit_code == 0, fitted.output
    out = tmp_path / "cli.jsonl"
    listed = _cli("attribute", clf_dir, data / "test", "-o", out, "--cache-dir", data / "cache", "--device", "cpu")
    assert listed.exit_code == 0, listed.output
    loaded = Attributor.load(clf_dir, cache_dir=data / "cache", device="cpu")
    assert loaded.spec.id == "spectrum-v1" and loaded.classifier.training_.train_counts["real"] == 10
    cli_labels = [(r["path"], r["label"]) for r in read_records(out)]
    assert cli_labels == [(r["path"], r["label"]) for r in loaded.attribute_paths([data / "test"])]


def test_attribute_paths_streams_records_in_order_with_error_records(fitted, data, monkeypatch):
    monkeypatch.setattr(attributor_module, "CHUNK", 5)  # several chunks: records come out chunk by chunk
    files = [*sorted((data / "test" / "stripes").iterdir()), data / "broken.png", data / "test" / "real"]
    stream = fitted.attribute_paths(files)
    assert isinstance(stream, Iterator)
    first = next(stream)
    assert first["path"] == str(files[0]) and first["backbone"] == "spectrum-v1" and len(first["sha256"]) == 64
    records = [first, *stream]
    assert len(records) == 3 + 1 + 3
    assert records[3] == {"path": str(data / "broken.png"), "error": records[3]["error"]}
    assert [r["path"] for r in records[4:]] == [str(p) for p in sorted((data / "test" / "real").iterdir())]
    assert all(r["label"] == "unknown" for r in records[:3])  # stripes: a source nobody trained on


def test_load_refuses_what_it_cannot_use(fitted, data, tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 3))
    arrays_only = LinearProbe(Cs=(1.0,)).fit(x, np.array(["a", "b"] * 10))
    arrays_only.save(tmp_path / "arrays")
    with pytest.raises(UsageError, match="no backbone spec"):
        Attributor.load(tmp_path / "arrays")
    with pytest.raises(UsageError, match="no backbone spec"):
        Attributor(arrays_only, create_backbone("spectrum"))
    with pytest.raises(ClassifierError, match="cannot read classifier"):
        Attributor.load(tmp_path / "nowhere")
    assert Attributor(arrays_only).attribute(x[:2], ["a.png", "b.png"])[0]["path"] == "a.png"  # features only
    with pytest.raises(UsageError, match="no backbone"):
        Attributor(arrays_only).embed([data / "broken.png"])
    other = OpenSetClassifier.load(data / "py-clf")
    other.backbone_ = dataclasses.replace(other.backbone_, id="spectrum-v0")  # as if fitted on other weights
    with pytest.raises(BackboneError, match="fitted on spectrum-v0"):
        Attributor(other, create_backbone("spectrum"))
    with pytest.raises(BackboneError, match="fitted on spectrum-v0"):
        other.backbone_.create(device="cpu")


def test_reads_a_classifier_json_of_the_first_format(fitted, data, tmp_path):
    import shutil

    shutil.copytree(data / "py-clf", tmp_path / "v1")
    path = tmp_path / "v1" / "classifier.json"
    info = json.loads(path.read_text())
    spec, training = info.pop("backbone"), info.pop("training")
    info["format"] = "imgorigin-openset-1"
    info["metadata"] = {
        "backbone": spec["name"],
        "backbone_id": spec["id"],
        "layer": spec["layer"],
        "preprocess": spec["preprocess"],
        **training,
    }
    path.write_text(json.dumps(info))
    old = OpenSetClassifier.load(tmp_path / "v1")
    assert old.backbone_ == fitted.spec and old.training_ == fitted.classifier.training_


def test_class_folders_errors(data):
    assert set(class_folders(data / "train")) == {"real", "blocky", "white"}
    with pytest.raises(UsageError, match="not a folder"):
        class_folders(data / "broken.png")
    with pytest.raises(UsageError, match="sub-folder"):
        class_folders(data / "test" / "real")
    with pytest.raises(UsageError, match="classifier must be one of"):
        Attributor.fit(data / "train", classifier="svm", backbone="spectrum")
