"""Open-set attribution metrics: closed-set accuracy, AUROC, OSCR, TPR at a fixed FPR, confusion matrix.

Conventions: a rejection score is higher for "more likely a known source"; an image is accepted when its
score is >= the threshold. Known images are positives, images of unknown sources negatives. Ties between
a known and an unknown score count one half (every distinct score is a threshold on the curves).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def closed_set_accuracy(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray) -> float:
    """Fraction of known images whose predicted class (argmax, no rejection) is the true one."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"need equal, non-empty label arrays, got shapes {y_true.shape} and {y_pred.shape}")
    return float(np.mean(y_true == y_pred))


def _accepted(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of the (ascending) scores are >= each threshold."""
    return len(sorted_scores) - np.searchsorted(sorted_scores, thresholds, side="left")


def _curves(
    known_scores: np.ndarray, unknown_scores: np.ndarray, known_correct: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(FPR, TPR, CCR, thresholds) at every distinct score, from (0, 0, 0, +inf) to all accepted."""
    known, unknown = np.asarray(known_scores, float).ravel(), np.asarray(unknown_scores, float).ravel()
    if known.size == 0 or unknown.size == 0:
        raise ValueError("need at least one known and one unknown score")
    if not (np.isfinite(known).all() and np.isfinite(unknown).all()):
        raise ValueError("scores must be finite")
    correct = np.ones(known.size, bool) if known_correct is None else np.asarray(known_correct, bool).ravel()
    thresholds = np.concatenate([[np.inf], np.unique(np.concatenate([known, unknown]))[::-1]])
    fpr = _accepted(np.sort(unknown), thresholds) / unknown.size
    tpr = _accepted(np.sort(known), thresholds) / known.size
    ccr = _accepted(np.sort(known[correct]), thresholds) / known.size
    return fpr, tpr, ccr, thresholds


def roc_curve(known_scores: np.ndarray, unknown_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FPR, TPR, thresholds) of known-vs-unknown detection, one point per distinct score."""
    fpr, tpr, _, thresholds = _curves(known_scores, unknown_scores)
    return fpr, tpr, thresholds


def auroc(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float:
    """Area under the ROC of known (positive) vs unknown: P(known score > unknown score), ties 1/2."""
    fpr, tpr, _, _ = _curves(known_scores, unknown_scores)
    return float(np.trapezoid(tpr, fpr))


def oscr(known_scores: np.ndarray, known_correct: np.ndarray, unknown_scores: np.ndarray) -> float:
    """Open-Set Classification Rate (Dhamija et al. 2018; Chen et al. 2021): area under CCR against FPR.

    CCR(t) is the fraction of all known images that are both accepted (score >= t) and correctly classified;
    FPR(t) the fraction of unknown images accepted. At most the closed-set accuracy; equal to AUROC x
    accuracy only when errors and scores are independent.
    """
    fpr, _, ccr, _ = _curves(known_scores, unknown_scores, known_correct)
    return float(np.trapezoid(ccr, fpr))


def tpr_at_fpr(known_scores: np.ndarray, unknown_scores: np.ndarray, fpr: float = 0.05) -> float:
    """Highest fraction of known images accepted by a threshold that accepts at most ``fpr`` of unknowns."""
    rates_fp, rates_tp, _, _ = _curves(known_scores, unknown_scores)
    return float(rates_tp[rates_fp <= fpr + 1e-12].max())


def confusion_matrix(y_true: Sequence, y_pred: Sequence, labels: Sequence[str]) -> np.ndarray:
    """Counts [len(labels), len(labels)]: row = true label, column = predicted label, in ``labels`` order."""
    from sklearn.metrics import confusion_matrix  # imported here: sklearn costs ~1 s, and the CLI imports this module

    return confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=list(labels))


def open_set_summary(
    known_true: Sequence,
    known_pred: Sequence,
    known_scores: np.ndarray,
    unknown_scores: np.ndarray,
    threshold: float | None = None,
) -> dict[str, float]:
    """The headline numbers for one evaluation: accuracy, AUROC, OSCR, TPR at 5 % FPR (+ rates at a threshold).

    ``known_pred`` is the closed-set (argmax) prediction; with ``threshold``, also the fraction of known
    images accepted and of unknown images rejected at that operating point.
    """
    correct = np.asarray(known_true) == np.asarray(known_pred)
    summary = {
        "closed_set_accuracy": closed_set_accuracy(known_true, known_pred),
        "auroc": auroc(known_scores, unknown_scores),
        "oscr": oscr(known_scores, correct, unknown_scores),
        "tpr_at_5_fpr": tpr_at_fpr(known_scores, unknown_scores, 0.05),
    }
    if threshold is not None:
        summary["known_accepted"] = float(np.mean(np.asarray(known_scores) >= threshold))
        summary["unknown_rejected"] = float(np.mean(np.asarray(unknown_scores) < threshold))
    return summary


def psnr(images: np.ndarray, references: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Per-image PSNR in dB of ``images`` against ``references`` (same shape ``[N, ...]``, values in [0, peak]);
    identical images are capped at 100 dB."""
    a = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    b = np.asarray(references, dtype=np.float64).reshape(len(references), -1)
    mse = np.maximum(((a - b) ** 2).mean(axis=1), peak**2 * 1e-10)
    return 10.0 * np.log10(peak**2 / mse)
