"""The verification benchmark's metrics: hand-checkable values, and the quantisation floor in decisions."""

from __future__ import annotations

import numpy as np
import pytest

from imgorigin.benchmarks.verification import markdown, pair_metrics
from imgorigin.zoo.calibrations import INVERSION_OVERRIDES, inversion_config


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


def test_markdown_has_one_row_per_pair_and_variant():
    metric = {"auroc": 1.0, "tpr_at_1_fpr": 1.0, "accuracy": 1.0, "members_accepted": 1.0, "non_members_accepted": 0.0}
    results = {
        "models": {
            "m": {
                "seconds_per_image": 0.5,
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
    assert inversion_config("dcgan") == inversion_config("vae")  # the defaults
