"""Fused features (imgorigin.attribution.fusion) and fused layers in the attribution benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from imgorigin.attribution import fusion
from imgorigin.benchmarks.attribution import run
from test_cli_attribute import make_folders


def test_parts_and_spec_round_trip():
    assert fusion.parts("3.mean+6") == [(None, "3.mean"), (None, "6")]
    assert fusion.parts("6 + spectrum@grid") == [(None, "6"), ("spectrum", "grid")]
    assert fusion.spec(fusion.parts("6+spectrum@grid")) == "6+spectrum@grid"
    assert fusion.is_fused("3.mean+6") and fusion.is_fused("spectrum@grid") and not fusion.is_fused("3.mean")
    for wrong in ("6+", "@grid+6"):
        with pytest.raises(ValueError, match="empty part"):
            fusion.parts(wrong)


def test_fuse_by_hand():
    fused = fusion.fuse([np.array([[3.0, 4.0], [0.0, 0.0]]), np.array([[0.0, 2.0], [1.0, 0.0]])])
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(fused, [[0.6 * s, 0.8 * s, 0, s], [0, 0, s, 0]], rtol=1e-6)  # zero rows stay zero
    features = {(None, "a"): np.array([[3.0, 4.0]]), ("other", "b"): np.array([[0.0, 5.0]])}
    np.testing.assert_allclose(fusion.fused_features("a+other@b", features), [[0.6 * s, 0.8 * s, 0, s]], rtol=1e-6)


def test_benchmark_sweeps_fused_layers_from_the_cache(tmp_path):
    root = make_folders(tmp_path / "zoo", ["real", "blocky", "white"], 6, seed=5)
    common = dict(
        classifiers=["knn"], rejections=["knn"], shots=[None], n_unknown=1, cache_dir=tmp_path / "cache", device="cpu"
    )
    layers = ["radial", "radial+grid", "grid+spectrum@radial"]
    results = run(root, tmp_path / "out", backbone="spectrum", layers=layers, log=lambda _: None, **common)
    assert results["config"]["layers"] == layers
    assert {r["layer"] for r in results["rows"]} == set(layers) and len(results["rows"]) == 6
    # a fused layer made of one part is that part, L2-normalised: the same cosine k-NN answers
    alone = run(root, tmp_path / "o2", backbone="spectrum", layers=["spectrum@radial"], log=lambda _: None, **common)
    for fused, plain in zip(alone["rows"], [r for r in results["rows"] if r["layer"] == "radial"], strict=True):
        assert fused["auroc"] == plain["auroc"] and fused["closed_set_accuracy"] == plain["closed_set_accuracy"]
