"""Decision statistics against hand-computed and published values; calibration files round-trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from imgorigin.verification.calibration import (
    QUANTISATION_FLOOR,
    Calibration,
    CalibrationError,
    conformal_p_value,
    grubbs_critical_value,
    grubbs_test,
)
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import decide


def make(scores, reference=None) -> Calibration:
    return Calibration(
        model_id="m",
        weight_hash="ab" * 32,
        image_shape=(1, 8, 8),
        inversion=InversionConfig(),
        scores=np.array(scores, dtype=float),
        reference_scores=reference,
    )


def test_conformal_p_value_hand_values():
    cal = np.array([1.0, 2.0, 3.0, 4.0])
    assert conformal_p_value(2.5, cal) == pytest.approx(3 / 5)  # 3 and 4 are >= 2.5
    assert conformal_p_value(5.0, cal) == pytest.approx(1 / 5)
    assert conformal_p_value(0.0, cal) == pytest.approx(5 / 5)
    assert conformal_p_value(3.0, cal) == pytest.approx(3 / 5)  # ties count as at least as large


@pytest.mark.parametrize(("n", "alpha", "table"), [(10, 0.05, 2.176), (20, 0.05, 2.557), (10, 0.01, 2.410)])
def test_grubbs_critical_values_match_the_published_one_sided_table(n, alpha, table):
    assert grubbs_critical_value(n, alpha) == pytest.approx(table, abs=2e-3)


def test_grubbs_p_value_is_alpha_exactly_at_the_critical_value():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=19)
    # find the value whose G in the augmented sample equals the critical value, by bisection
    crit = grubbs_critical_value(20, 0.05)

    def g_of(v):
        a = np.append(sample, v)
        return (v - a.mean()) / a.std(ddof=1)

    lo, hi = sample.max(), sample.max() + 50
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if g_of(mid) < crit else (lo, mid)
    p, outlier = grubbs_test(hi + 1e-9, sample, 0.05)
    assert p == pytest.approx(0.05, rel=1e-4) and outlier
    p_in, outlier_in = grubbs_test(float(np.median(sample)), sample, 0.05)
    assert not outlier_in and p_in > 0.05
    assert grubbs_test(-10.0, sample, 0.05) == (1.0, False)  # low values are never "not belonging"


def test_threshold_matches_the_conformal_rule():
    cal = make(np.arange(1, 20))  # N = 19
    t = cal.threshold(0.05)  # k = floor(0.05 * 20) = 1: the largest score
    assert t == 19
    assert cal.p_value(t) > 0.05 >= cal.p_value(t + 0.5)
    assert make(np.arange(1, 10)).threshold(0.05) == math.inf  # N = 9: nothing can be rejected at 5 %


def test_decide_verdicts_with_and_without_reference():
    cal = make(np.linspace(1e-6, 2e-6, 99), reference=np.linspace(1e-3, 1e-2, 99))
    member = decide(1.5e-6, cal, 0.05)
    assert member["verdict"] == "member" and member["belongs"] and member["p_value_real"] == pytest.approx(1 / 100)
    outsider = decide(5e-3, cal, 0.05)
    assert outsider["verdict"] == "non-member" and not outsider["belongs"]
    assert outsider["p_value"] == pytest.approx(1 / 100)
    assert "outside_calibration_range" in outsider["reasons"]
    overlap = make(np.linspace(1e-6, 2e-6, 99), reference=np.linspace(1e-6, 2e-6, 99))
    both = decide(1.5e-6, overlap, 0.05)
    assert both["verdict"] == "inconclusive" and "overlaps_real_reference" in both["reasons"]
    assert decide(1.5e-6, make(np.linspace(1e-6, 2e-6, 99)), 0.05)["p_value_real"] is None


def test_save_load_round_trip(tmp_path):
    cal = make([3.0, 1.0, 2.0], reference=np.array([5.0, 4.0]))
    path = cal.save(tmp_path / "cal.json")
    data = json.loads(path.read_text())
    assert data["format"] == "imgorigin.calibration/1" and data["scores"] == [1.0, 2.0, 3.0]
    back = Calibration.load(path)
    np.testing.assert_array_equal(back.scores, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(back.reference_scores, [4.0, 5.0])
    assert back.inversion == cal.inversion and back.image_shape == (1, 8, 8)


def test_bad_files_and_mismatched_models(tmp_path):
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(CalibrationError, match="not an imgorigin calibration"):
        Calibration.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="unreadable"):
        Calibration.load(tmp_path / "y.json")
    with pytest.raises(CalibrationError, match="imgorigin calibrate"):
        make([1.0, 2.0]).check_model("other", "cd" * 32, (1, 8, 8))
    with pytest.raises(CalibrationError, match="at least 2"):
        make([1.0])


def test_mse_scores_below_the_8bit_quantisation_floor_are_indistinguishable():
    floor = QUANTISATION_FLOOR
    assert floor == pytest.approx(1.28e-6, rel=1e-2)
    cal = make(np.linspace(0.3, 1.0, 40) * floor)  # every calibration residual already at the floor
    # the floor band: 3 sd of the rounding MSE's spread over the 64 values of a 1×8×8 image above it
    band = floor * (1 + 3 * math.sqrt(0.8 / 64))
    assert cal.floor == pytest.approx(band) and cal.floor == pytest.approx(1.711e-6, rel=1e-3)
    assert cal.p_value(0.99 * floor) == 1.0 and cal.p_value(0.2 * floor) == 1.0 and cal.p_value(0.99 * band) == 1.0
    assert cal.p_value(1.01 * band) == pytest.approx(1 / 41)  # just above the band: beyond every calibration score
    assert cal.threshold(0.05) == band and cal.in_range(0.01 * floor)
    assert cal.grubbs(0.9 * floor, 0.05) == (1.0, False)
    assert cal.p_value(3 * floor) == pytest.approx(1 / 41) and cal.grubbs(3 * floor, 0.05)[1]
    rgb = Calibration(
        model_id="m", weight_hash="ab" * 32, image_shape=(3, 64, 64), inversion=InversionConfig(),
        scores=np.linspace(1.25e-6, 1.29e-6, 40),
    )  # fmt: skip
    assert rgb.floor == pytest.approx(floor * (1 + 3 * math.sqrt(0.8 / 12288)))  # 1.312e-6: a 64×64 RGB member
    assert rgb.p_value(1.2989e-6) == 1.0 and rgb.p_value(1.4e-6) == pytest.approx(1 / 41)
    l1 = Calibration(
        model_id="m",
        weight_hash="ab" * 32,
        image_shape=(1, 8, 8),
        inversion=InversionConfig(distance="l1"),
        scores=np.linspace(0.3, 1.0, 40) * floor,
    )
    assert l1.floor == 0.0 and l1.p_value(0.99 * floor) < 0.2  # no floor for other distances
