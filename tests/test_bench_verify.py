"""The verification benchmark's metrics: hand-checkable values, and the quantisation floor in decisions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imgorigin import zoo
from imgorigin.benchmarks import verification as bench
from imgorigin.benchmarks.verification import markdown, pair_metrics
from imgorigin.verification import InversionConfig
from imgorigin.verification.generators import ModuleGenerator
from imgorigin.zoo import data
from imgorigin.zoo.calibrations import INVERSION_OVERRIDES, inversion_config
from tiny_models import TinyGenerator, real_like, tiny_latent_model

FAST = InversionConfig(steps=150, restarts=2, patience=30, batch_size=16, search_candidates=8)


def test_pair_metrics_hand_values():
    cal = np.sort(np.array([1.0, 2.0, 3.0, 4.0]))
    m = pair_metrics(cal, members=np.array([1.5, 2.5]), others=np.array([3.5, 10.0]), alpha=0.25)
    # p-values: 1.5 -> 4/5, 2.5 -> 3/5 (accepted); 3.5 -> 2/5 (accepted), 10 -> 1/5 (rejected, 1/5 < 0.25)
    assert m["auroc"] == 1.0 and m["members_accepted"] == 1.0 and m["non_members_accepted"] == 0.5
    assert m["accuracy"] == pytest.approx(3 / 4)
    # lower score = member: the threshold 2 accepts members 1 and 2 and no non-member (3, 4): TPR 2/3 at FPR 0
    low = pair_metrics(cal, members=np.array([1.0, 2.0, 5.0]), others=np.array([3.0, 4.0]), alpha=0.25)
    assert low["tpr_at_1_fpr"] == pytest.approx(2 / 3) and low["auroc"] == pytest.approx(4 / 6)


def test_tpr_at_1_fpr_keeps_tied_operating_points():
    # members [1, 2, 3] tie with 3 of 200 non-members: accepting scores <= 2 takes 2 of 3 members at FPR
    # 2/200 = 1 %. On the straight run of tied points sklearn's drop_intermediate dropped that one (TPR 1/3).
    members = np.array([1.0, 2.0, 3.0])
    others = np.r_[members, np.full(197, 10.0)]
    m = pair_metrics(np.sort(np.linspace(0.5, 20, 20)), members, others, alpha=0.05)
    assert m["tpr_at_1_fpr"] == pytest.approx(2 / 3)
    # AUROC by pairs: every member beats the 197 tens; among 1, 2, 3: 2 + 1 wins and 3 ties of one half each
    assert m["auroc"] == pytest.approx((3 * 197 + 3 + 1.5) / (3 * 200))


def test_scores_below_the_floor_tie_in_decisions_but_not_in_auroc():
    cal = np.sort(np.linspace(0.5, 0.9, 20))
    members = np.array([0.95, 0.99])  # above every calibration score, but all below the floor 1.0
    raw = pair_metrics(cal, members, np.array([5.0]), alpha=0.05)
    floored = pair_metrics(cal, members, np.array([5.0]), alpha=0.05, floor=1.0)
    assert raw["members_accepted"] == 0.0 and floored["members_accepted"] == 1.0
    assert floored["non_members_accepted"] == 0.0 and floored["auroc"] == raw["auroc"] == 1.0


def test_markdown_has_one_row_per_pair_and_score():
    metric = {"auroc": 1.0, "tpr_at_1_fpr": 1.0, "accuracy": 1.0, "members_accepted": 1.0, "non_members_accepted": 0.0}
    results = {
        "models": {
            "m": {
                "seconds_per_image": {"raw": 0.5, "complexity": 0.5},
                "pairs": {"real": {"raw": metric, "complexity": metric}, "o": {"raw": metric, "complexity": metric}},
            }
        }
    }
    rows = [line for line in markdown(results).splitlines() if line.startswith("| m |")]
    assert len(rows) == 4


def test_zoo_inversion_overrides_are_valid_settings():
    for name, override in INVERSION_OVERRIDES.items():
        cfg = inversion_config(name)
        assert all(getattr(cfg, k) == v for k, v in override.items())
    assert inversion_config("dcgan") == inversion_config("vae")  # the earlier refinement defaults


def test_run_end_to_end_on_tiny_models_writes_json_markdown_and_figures(tmp_path, monkeypatch):
    gens = {name: ModuleGenerator(TinyGenerator(seed=seed), [8], id=name) for name, seed in (("a", 0), ("b", 5))}
    gens["rgb"] = ModuleGenerator(TinyGenerator(seed=2, channels=3), [8], id="rgb")  # another kind of image
    monkeypatch.setattr(zoo, "list_models", lambda: list(gens))
    monkeypatch.setattr(zoo, "load", lambda name, device="cpu": gens[name])
    monkeypatch.setattr(zoo, "sample", lambda name, n, seed=0, device="cpu": gens[name].sample(n, seed=seed))
    monkeypatch.setattr(data, "is_available", lambda root=None: False)
    monkeypatch.setattr(data, "subset_images", lambda: real_like(6, seed=1))
    # the per-image reference loop (1500 Adam steps per image) is replaced by fixed scores: members first
    monkeypatch.setattr(bench, "reference_loop", lambda gen, images: (np.r_[[1e-6] * 3, [1e-2] * 3], 2.0))
    args = {"n_cal": 8, "n_members": 4, "n_real": 4, "n_other": 4, "alpha": 0.2, "config": FAST}
    bench.run(["a"], tmp_path, **args, reference_model="a", n_reference=3, device=torch.device("cpu"), log=str)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["device"] == "cpu" and saved["models"]["a"]["inversion"] == FAST.to_dict()
    pairs = saved["models"]["a"]["pairs"]
    # the colour model is no non-member of a grayscale one: only models of the same image shape are compared
    assert set(pairs) == {"real", "b"} and all(p["raw"]["auroc"] == 1.0 for p in pairs.values())
    reference = saved["reference_loop"]
    assert reference["n"] == 6 and reference["reference"]["auroc"] == 1.0 and reference["batched"]["auroc"] == 1.0
    assert "| a | b | raw |" in (tmp_path / "results.md").read_text() and (tmp_path / "a.png").is_file()


def test_latent_diffusion_models_get_the_encoder_and_diffusion_scores_with_their_own_timings(tmp_path, monkeypatch):
    gens = {"ldm-a": tiny_latent_model(0), "ldm-b": tiny_latent_model(1)}  # one autoencoder, two latent UNets
    monkeypatch.setattr(zoo, "list_models", lambda: list(gens))
    monkeypatch.setattr(zoo, "load", lambda name, device="cpu": gens[name])
    monkeypatch.setattr(zoo, "sample", lambda name, n, seed=0, device="cpu": gens[name].sample(n, seed=seed))
    monkeypatch.setattr(data, "is_available", lambda root=None: False)
    monkeypatch.setattr(data, "subset_images", lambda: real_like(4, seed=1))
    cfg = InversionConfig(steps=5, restarts=1, batch_size=8, init="encoder")
    args = {"n_cal": 6, "n_members": 3, "n_real": 3, "n_other": 3, "alpha": 0.2, "config": cfg}
    bench.run(["ldm-a"], tmp_path, **args, reference_model=None, n_reference=0, device=torch.device("cpu"), log=str)
    entry = json.loads((tmp_path / "results.json").read_text())["models"]["ldm-a"]
    scores = {"raw", "complexity", "aedr", "denoising (encoder z)", "ddim-inversion (encoder z)"}
    scores.add("ddim-inversion (inverted z)")
    assert set(entry["pairs"]["ldm-b"]) == set(entry["seconds_per_image"]) == scores
    seconds = entry["seconds_per_image"]
    # a score computed from the inversion's latents pays for the inversion too
    assert seconds["ddim-inversion (inverted z)"] > seconds["raw"] == seconds["complexity"] > seconds["aedr"] > 0
    assert all(0.0 <= m["auroc"] <= 1.0 for by_score in entry["pairs"].values() for m in by_score.values())


def test_pixel_diffusion_models_get_the_profile_and_a_chosen_score_runs_alone(tmp_path, monkeypatch):
    import diffusers

    from imgorigin.verification.generators.ddim import DDIMGenerator
    from tiny_models import tiny_unet

    def ddim(seed: int) -> DDIMGenerator:
        scheduler = diffusers.DDIMScheduler(num_train_timesteps=100, clip_sample=False)
        return DDIMGenerator(tiny_unet(seed=seed), scheduler, 3, id=f"ddim-{seed}")

    gens = {"ddim-a": ddim(0), "ddim-b": ddim(1)}
    monkeypatch.setattr(zoo, "list_models", lambda: list(gens))
    monkeypatch.setattr(zoo, "load", lambda name, device="cpu": gens[name])
    monkeypatch.setattr(zoo, "sample", lambda name, n, seed=0, device="cpu": gens[name].sample(n, seed=seed))
    monkeypatch.setattr(bench, "data_real", lambda data, n: real_like(4, seed=1)[:, :1, :8, :8])
    assert "denoising-profile" in bench.scorers(gens["ddim-a"], FAST, n_fit=20)
    args = {"n_cal": 20, "n_members": 4, "n_real": 4, "n_other": 4, "alpha": 0.2, "config": FAST}
    run = {"reference_model": None, "n_reference": 0, "device": torch.device("cpu"), "log": str}
    bench.run(["ddim-a"], tmp_path, **args, **run, scores=("denoising-profile",))
    entry = json.loads((tmp_path / "results.json").read_text())["models"]["ddim-a"]
    assert set(entry["pairs"]) == {"real", "ddim-b"} and set(entry["seconds_per_image"]) == {"denoising-profile"}
    assert entry["histogram_score"] == "denoising-profile" and (tmp_path / "ddim-a.png").is_file()
    with pytest.raises(ValueError, match="scores must be among"):
        bench.run(["ddim-a"], tmp_path, **args, **run, scores=("nope",))
