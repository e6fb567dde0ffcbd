"""Two-stage attribution: bound generators confirmed by verification, unbound ones rejected, real on features."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from imgorigin.attribution.attributor import Attributor
from imgorigin.attribution.openset import LinearProbe
from imgorigin.images import save_png
from imgorigin.twostage import Binding, Bindings, TwoStageAttributor
from imgorigin.verification import load_generator
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import calibrate
from tiny_models import TinyGenerator, real_like, save_torchscript

FAST = InversionConfig(steps=150, restarts=2, patience=30, batch_size=32, search_candidates=8, prune_after=0)
GOLDEN = Path(__file__).parent / "golden" / "twostage_record.json"
N = 6


def _features(kind: str, n: int, seed: int) -> np.ndarray:
    """Synthetic stage-1 features: class 'a' and the unseen generator 'c' look alike; 'real' stands apart."""
    rng = np.random.default_rng(seed)
    centre = {"a": [4.0, 0.0], "c": [4.0, 0.3], "real": [0.0, 4.0]}[kind]
    return np.asarray(centre) + 0.3 * rng.normal(size=(n, 2))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("twostage")
    save_torchscript(TinyGenerator(seed=0), root / "a.pt")
    save_torchscript(TinyGenerator(seed=9), root / "c.pt")
    gen_a, gen_c = load_generator(str(root / "a.pt")), load_generator(str(root / "c.pt"))
    calibrate(gen_a, 40, config=FAST, learned_init=False).save(root / "a.cal.json")
    paths: dict[str, list[str]] = {}
    for kind, images in (
        ("a", gen_a.sample(N, seed=50)),
        ("c", gen_c.sample(N, seed=51)),
        ("real", real_like(N, seed=52)),
    ):
        folder = root / kind
        folder.mkdir()
        paths[kind] = []
        for i, image in enumerate(images):
            save_png(image, folder / f"{i}.png")
            paths[kind].append(str(folder / f"{i}.png"))
    clf = LinearProbe(random_state=0).fit(
        np.r_[_features("a", 20, 0), _features("real", 20, 1)], np.array(["a"] * 20 + ["real"] * 20)
    )
    clf.save(root / "clf")
    return root, clf, paths


def _attribute(world, **options):
    root, clf, paths = world
    bindings = {"a": Binding.parse(f"a={root / 'a.pt'}@{root / 'a.cal.json'}")}
    # the tiny model's images are near-white noise, so every smooth 'real' image has less fine detail than any
    # of them: the fine-detail check (on by default, see test_smooth_images_are_inconclusive) is off here
    attributor = TwoStageAttributor(Attributor(clf), bindings, alpha=0.05, **{"detail_alpha": None, **options})
    features = np.r_[_features("a", N, 10), _features("c", N, 11), _features("real", N, 12)]
    return attributor.attribute(features, paths["a"] + paths["c"] + paths["real"])


def test_bound_members_confirmed_unbound_rejected_real_on_features(world):
    records = _attribute(world)
    bound, unbound, real = records[:N], records[N : 2 * N], records[2 * N :]
    assert sum(r["label"] == "a" and r["rule"] == "verification" for r in bound) >= N - 1
    assert all(0.05 < r["verification"]["a"]["p_value"] <= 1 for r in bound if r["label"] == "a")
    # the features cannot tell 'c' from 'a'; verification can
    assert all(r["features"]["best_known"] == "a" for r in unbound)
    assert all(r["label"] == "unknown" and r["rule"] == "rejected" for r in unbound)
    # the feature threshold accepts 95 % of known images by design: allow one miss, which must say unknown
    assert sum(r["label"] == "real" and r["rule"] == "features" for r in real) >= N - 1
    assert all(r["label"] in ("real", "unknown") for r in real)
    known = np.array([r["known_score"] for r in bound + real if r["known"]])
    assert known.min() > max(r["known_score"] for r in unbound)  # the ranking separates known from unknown


def _masked(record: dict) -> dict:
    """The record's shape and decisions, with paths and floating-point evidence masked."""

    def mask(value):
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        if isinstance(value, float):
            return "<float>"
        return value

    masked = mask(record)
    masked["path"] = "<path>"
    masked["verification"]["a"]["model"] = "<model>"
    return masked


def test_smooth_images_are_inconclusive_under_the_default_detail_check(world):
    from imgorigin.verification.detail import DEFAULT_ALPHA

    records = _attribute(world, detail_alpha=DEFAULT_ALPHA)
    real = records[2 * N :]
    assert all(
        (r["label"], r["rule"], r["reasons"]) == ("inconclusive", "conflict", ["smoother_than_model"]) for r in real
    )
    assert all(r["verification"]["a"]["reasons"] == ["smoother_than_model"] for r in real)
    assert sum(r["label"] == "a" for r in records[:N]) >= N - 1  # the model's own images keep their verdicts


def test_golden_record(world):
    record = _masked(_attribute(world)[N])  # the first image of the unbound generator
    if os.environ.get("IMGORIGIN_UPDATE_GOLDEN"):  # regenerate deliberately, then review the diff
        GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    assert record == json.loads(GOLDEN.read_text())


def test_bindings_round_trip_and_errors(world, tmp_path):
    root, clf, _ = world
    binding = Binding.parse(f"a={root / 'a.pt'}@{root / 'a.cal.json'}")
    Bindings([binding]).save(root / "clf")
    assert Bindings.load(root / "clf") == {"a": binding}
    with pytest.raises(ValueError, match="not a class"):
        Bindings([Binding("zzz", "zoo:dcgan")]).save(root / "clf")
    with pytest.raises(ValueError, match="LABEL=MODEL"):
        Binding.parse("nonsense")
    with pytest.raises(ValueError, match="give its calibration"):
        Binding.parse("a=model.pt").calibration_path()
    assert Bindings.load(tmp_path) == {}
    rebound = Bindings([binding]).merged({"real": Binding("real", "zoo:dcgan")}, unbind=["a"])
    assert dict(rebound) == {"real": Binding("real", "zoo:dcgan")}


def test_candidates_ruled_out_by_features_are_skipped(world):
    root, clf, _ = world
    bindings = {"a": Binding("a", str(root / "a.pt"), str(root / "a.cal.json"))}
    probabilities = np.array([[0.6, 0.4], [0.002, 0.998], [0.0005, 0.9995]])  # columns: a, real
    attributor = Attributor(clf)
    assert TwoStageAttributor(attributor, bindings).candidates(probabilities) == [["a"], ["a"], ["a"]]
    floor = TwoStageAttributor(attributor, bindings, min_probability=0.001)
    assert floor.candidates(probabilities) == [["a"], ["a"], []]
    assert TwoStageAttributor(attributor, bindings, top_k=1).candidates(probabilities) == [["a"], [], []]
    with pytest.raises(ValueError, match="min_probability"):
        TwoStageAttributor(attributor, bindings, min_probability=1.0)


def test_an_image_verification_cannot_read_gives_an_error_record(world, tmp_path):
    root, clf, paths = world
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    bindings = {"a": Binding("a", str(root / "a.pt"), str(root / "a.cal.json"))}
    two_stage = TwoStageAttributor(Attributor(clf), bindings, device="cpu")
    records = two_stage.attribute(_features("a", 2, 20), [paths["a"][0], str(broken)])
    assert records[0]["candidates"] == ["a"] and "a" in records[0]["verification"]
    assert list(records[1]) == ["path", "error"] and records[1]["path"] == str(broken)
    assert two_stage.settings() == {
        "alpha": 0.05,
        "top_k": None,
        "min_probability": 0.0,
        "bound": {"a": str(root / "a.pt")},
    }
