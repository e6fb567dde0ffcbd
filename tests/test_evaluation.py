"""The open-set evaluation as a library: hand-made answers in, hand-computed metrics out."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from imgorigin.attribution.evaluation import Answers, feature_answers, open_set_metrics, summary, two_stage_answers
from imgorigin.attribution.openset import LinearProbe

KNOWN_Y = np.array(["a", "a", "b", "b"])
# the second 'a' is rejected; the second 'b' is taken for 'a' (wrong in the closed set too)
KNOWN = Answers(np.array(["a", "unknown", "b", "a"]), np.array(["a", "a", "b", "a"]), np.array([0.9, 0.2, 0.8, 0.7]))
# source x: rejected as inconclusive; source y: taken for 'b'
UNKNOWN = Answers(np.array(["inconclusive", "b"]), np.array(["a", "b"]), np.array([0.1, 0.75]))
CLASSIFIER = SimpleNamespace(classes_=np.array(["a", "b"]), threshold_=0.5, accept_rate=0.95)


def test_summary_by_hand():
    assert summary(KNOWN_Y, KNOWN, UNKNOWN) == {
        "closed_set_accuracy": 0.75,  # 3 of 4 closed-set labels right
        "auroc": 0.75,  # 6 of the 8 (known, unknown) pairs ordered right
        # CCR 2/4 up to FPR 1/2 (0.9 and 0.8 correct, 0.7 wrong), then 3/4 (0.2 correct): 0.5 * 0.5 + 0.5 * 0.75
        "oscr": 0.625,
        "tpr_at_5_fpr": 0.5,  # no unknown above 0.75: 0.9 and 0.8 accepted
        "known_accepted": 0.75,
        "unknown_rejected": 0.5,  # inconclusive counts as rejected
    }


def test_open_set_metrics_by_hand():
    metrics = open_set_metrics(CLASSIFIER, KNOWN_Y, KNOWN, np.array(["x", "y"]), UNKNOWN)
    assert metrics["threshold"] == 0.5 and metrics["accept_rate"] == 0.95
    assert metrics["n_images"] == {"known": 4, "unknown": 2}
    assert metrics["per_class"] == {
        "a": {"n": 2, "closed_set_accuracy": 1.0, "accepted": 0.5, "open_set_correct": 0.5},
        "b": {"n": 2, "closed_set_accuracy": 0.5, "accepted": 1.0, "open_set_correct": 0.5},
    }
    assert metrics["per_unknown_source"] == {
        "x": {"n": 1, "rejected": 1.0, "most_often_taken_for": None},
        "y": {"n": 1, "rejected": 0.0, "most_often_taken_for": "b"},
    }
    assert metrics["confusion_matrix"] == {
        "labels": ["a", "b", "unknown", "inconclusive"],
        # rows: true a, b, unknown (both unknown images), inconclusive (never a truth)
        "rows_true_columns_predicted": [[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0]],
    }
    assert list(metrics)[:6] == list(summary(KNOWN_Y, KNOWN, UNKNOWN))
    no_threshold = SimpleNamespace(**{**vars(CLASSIFIER), "threshold_": -np.inf})
    assert open_set_metrics(no_threshold, KNOWN_Y, KNOWN, np.array(["x", "y"]), UNKNOWN)["threshold"] is None


def test_two_stage_records_close_the_set_with_the_features_best_guess():
    records = [
        {"label": "a", "known": True, "known_score": 2.5, "features": {"best_known": "b"}},
        {"label": "unknown", "known": False, "known_score": 0.01, "features": {"best_known": "b"}},
        {"label": "inconclusive", "known": False, "known_score": 0.3, "features": {"best_known": "a"}},
    ]
    answers = two_stage_answers(records)
    assert answers.labels.tolist() == ["a", "unknown", "inconclusive"]
    assert answers.closed.tolist() == ["a", "b", "a"]
    assert answers.scores.tolist() == [2.5, 0.01, 0.3]
    part = answers.part(slice(1, None))
    assert part.labels.tolist() == ["unknown", "inconclusive"] and part.scores.tolist() == [0.01, 0.3]


def test_feature_answers_are_the_classifiers():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=(10, 2)), rng.normal(size=(10, 2)) + 5]
    clf = LinearProbe(Cs=(1.0,)).fit(x, np.array(["a"] * 10 + ["b"] * 10))
    answers = feature_answers(clf, x[[0, 15]])
    assert answers.closed.tolist() == ["a", "b"]
    assert answers.labels.tolist() == clf.predict(x[[0, 15]]).tolist()
    assert answers.scores == pytest.approx(clf.score_samples(x[[0, 15]]))
