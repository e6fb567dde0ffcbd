"""The `bench attribute` protocol as a library: rotating unknown sources, seeded nested splits, one run()."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgorigin.benchmarks.attribution import mean_std, rotating_splits, run, split
from imgorigin.errors import UsageError
from test_cli_attribute import make_folders


def test_unknown_sources_rotate_in_consecutive_runs_and_wrap():
    assert rotating_splits(["a", "b", "c"], 1, 3) == [["a"], ["b"], ["c"]]
    assert rotating_splits(["a", "b", "c"], 2, 3) == [["a", "b"], ["c", "a"], ["b", "c"]]
    assert rotating_splits(["a", "b", "c", "d"], 2, 2) == [["a", "b"], ["c", "d"]]  # each candidate unknown once
    assert rotating_splits(["a", "b"], 1, 4) == [["a"], ["b"], ["a"], ["b"]]


def test_split_keeps_test_images_apart_seeded_per_split():
    source_of = np.array(["real"] * 10 + ["a"] * 10 + ["b"] * 5)
    known, pools, test_known, test_unknown = split(source_of, 0, ["b"], 0.3, seed=0)
    assert known == ["real", "a"] and [len(p) for p in pools] == [7, 7] and len(test_known) == 6
    assert test_unknown.tolist() == list(range(20, 25))  # every image of an unknown source is a test image
    train = np.concatenate(pools)
    assert not set(train) & set(test_known) and set(source_of[train]) == {"real", "a"}
    assert all(set(source_of[pool]) == {name} for name, pool in zip(known, pools, strict=True))
    again = split(source_of, 0, ["b"], 0.3, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(pools, again.pools, strict=True))  # seeded
    other = split(source_of, 1, ["b"], 0.3, seed=0)
    assert not np.array_equal(test_known, other.test_known)  # another split draws other test images
    assert split(source_of, 0, ["a"], 0.05, seed=0).test_known.size == 2  # at least one test image per source


def test_mean_std_in_percent():
    assert mean_std([0.5]) == "50.0" and mean_std([0.4, 0.6]) == "50.0 ± 10.0"


def test_run_writes_results_without_the_cli(tmp_path):
    root = make_folders(tmp_path / "zoo", ["real", "blocky", "white"], 6, seed=5)
    lines = []
    results = run(
        root,
        tmp_path / "out",
        backbone="spectrum",
        layers=["radial"],
        classifiers=["linear"],
        rejections=["msp"],
        shots=[None, 50],
        n_unknown=1,
        cache_dir=tmp_path / "cache",
        device="cpu",
        log=lines.append,
    )
    assert results["config"]["splits"] == [["blocky"], ["white"]] and len(results["rows"]) == 2
    assert {r["n_train"] for r in results["rows"]} == {8} and {r["n_test_unknown"] for r in results["rows"]} == {6}
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == results
    assert any("skipping 50 shots" in line for line in lines) and "| radial | linear | msp | all | 2 |" in lines[-1]
    with pytest.raises(UsageError, match="at least 2 known"):
        run(root, tmp_path / "x", backbone="spectrum", n_unknown=2, device="cpu")
