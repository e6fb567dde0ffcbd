"""Metrics against small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from imgorigin.metrics import (
    auroc,
    closed_set_accuracy,
    confusion_matrix,
    open_set_summary,
    oscr,
    roc_curve,
    tpr_at_fpr,
)

# known scores K = [0.9, 0.8, 0.4, 0.4], unknown U = [0.7, 0.4, 0.1]; knowns 1 and 3 are classified correctly
KNOWN = np.array([0.9, 0.8, 0.4, 0.4])
UNKNOWN = np.array([0.7, 0.4, 0.1])
CORRECT = np.array([True, False, True, False])


def test_closed_set_accuracy():
    assert closed_set_accuracy(["a", "b", "c", "a"], ["a", "b", "a", "b"]) == 0.5  # 2 of 4 right
    with pytest.raises(ValueError):
        closed_set_accuracy([], [])


def test_auroc_by_pairs_with_ties():
    # pairs (known > unknown) out of 4 x 3 = 12: 0.9 beats all 3 -> 3; 0.8 beats all 3 -> 3;
    # each 0.4 beats 0.1 (1), ties 0.4 (1/2), loses to 0.7 -> 1.5, twice -> 3.  AUROC = 9 / 12 = 0.75
    assert auroc(KNOWN, UNKNOWN) == pytest.approx(0.75)
    assert auroc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert auroc([0.0], [1.0]) == 0.0
    assert auroc([5.0, 5.0], [5.0]) == 0.5  # all tied


def test_roc_curve_points():
    # thresholds +inf, 0.9, 0.8, 0.7, 0.4, 0.1: accepted known 0,1,2,2,4,4 of 4; unknown 0,0,0,1,2,3 of 3
    fpr, tpr, thresholds = roc_curve(KNOWN, UNKNOWN)
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.8, 0.7, 0.4, 0.1])
    np.testing.assert_allclose(tpr, [0, 0.25, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 0, 1 / 3, 2 / 3, 1])


def test_oscr_by_hand():
    # correctly classified knowns: 0.9 (beats 3 unknowns) and 0.4 (beats 1, ties 1 -> 1.5):
    # OSCR = (3 + 1.5) / (4 knowns x 3 unknowns) = 0.375.  As an area: CCR = 0.25 on FPR [0, 1/3],
    # rising to 0.5 on [1/3, 2/3] (trapezoid 0.125), 0.5 on [2/3, 1]: 1/12 + 1/8 + 1/6 = 0.375
    assert oscr(KNOWN, CORRECT, UNKNOWN) == pytest.approx(0.375)
    assert oscr(KNOWN, np.ones(4, bool), UNKNOWN) == pytest.approx(auroc(KNOWN, UNKNOWN))  # all correct
    # perfect separation: OSCR = accuracy
    assert oscr([3.0, 2.0, 1.5, 1.2], [True, True, False, True], [0.0, 1.0]) == pytest.approx(0.75)


def test_tpr_at_fixed_fpr():
    # FPR 0 is reached down to t = 0.8 (TPR 2/4); FPR 1/3 at 0.7 (still 2/4); FPR 2/3 at 0.4 (TPR 1)
    assert tpr_at_fpr(KNOWN, UNKNOWN, 0.05) == 0.5
    assert tpr_at_fpr(KNOWN, UNKNOWN, 0.5) == 0.5
    assert tpr_at_fpr(KNOWN, UNKNOWN, 2 / 3) == 1.0
    # 20 unknowns 0..19, knowns 18.5 and 17.5: t = 18.5 accepts unknown 19 only (FPR 1/20 = 5 %) and one
    # known; t = 17.5 accepts unknowns 18, 19 (10 %) and both knowns
    assert tpr_at_fpr([18.5, 17.5], np.arange(20.0), 0.05) == 0.5
    assert tpr_at_fpr([18.5, 17.5], np.arange(20.0), 0.10) == 1.0
    assert tpr_at_fpr([18.5, 17.5], np.arange(20.0), 0.0) == 0.0


def test_tpr_at_fpr_keeps_tied_operating_points():
    # known = unknown = [1, 2, 3]: every threshold lies on the diagonal; t = 2 accepts 2 of 3 of each, so at
    # FPR 2/3 the TPR is 2/3 (sklearn's roc_curve with drop_intermediate=True drops that point: 1/3)
    same = np.array([1.0, 2.0, 3.0])
    assert tpr_at_fpr(same, same, 2 / 3) == pytest.approx(2 / 3)
    assert tpr_at_fpr(same, same, 1 / 3) == pytest.approx(1 / 3)
    assert auroc(same, same) == 0.5


def test_confusion_matrix_rows_are_true_labels():
    matrix = confusion_matrix(["a", "a", "b", "x"], ["a", "b", "b", "unknown"], ["a", "b", "unknown", "x"])
    np.testing.assert_array_equal(matrix, [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]])


def test_open_set_summary_and_input_checks():
    summary = open_set_summary(["a", "b", "a", "b"], ["a", "a", "a", "a"], KNOWN, UNKNOWN, threshold=0.5)
    # predictions right for knowns 1 and 3 -> the CORRECT mask above
    assert summary == pytest.approx(
        {
            "closed_set_accuracy": 0.5,
            "auroc": 0.75,
            "oscr": 0.375,
            "tpr_at_5_fpr": 0.5,
            "known_accepted": 0.5,
            "unknown_rejected": 2 / 3,
        }
    )
    with pytest.raises(ValueError, match="at least one"):
        auroc([1.0], [])
    with pytest.raises(ValueError, match="finite"):
        auroc([np.nan], [1.0])
