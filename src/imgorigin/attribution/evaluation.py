"""Open-set evaluation: each image's answers (label, closed-set label, known-score) → the metrics of metrics.json.

Either mode gives :class:`Answers`: features alone (the classifier's labels and rejection score) or a second
stage's records (two-stage attribution: its label, the features' best guess to close the set, its known-score).
'unknown' and 'inconclusive' both count as rejected. :func:`evaluate` runs a whole evaluation on image files.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from imgorigin.attribution.attributor import Attributor
from imgorigin.attribution.openset import OpenSetClassifier
from imgorigin.errors import UsageError
from imgorigin.images import find_images
from imgorigin.labels import INCONCLUSIVE, REJECTED, UNKNOWN
from imgorigin.metrics import confusion_matrix, open_set_summary

T = TypeVar("T")


@dataclass(frozen=True)
class Answers:
    """One mode's answers per image: open-set label, closed-set label (never rejected) and known-score."""

    labels: np.ndarray
    closed: np.ndarray
    scores: np.ndarray

    def part(self, rows: slice | np.ndarray) -> Answers:
        """The answers of some of the images."""
        return Answers(self.labels[rows], self.closed[rows], self.scores[rows])


class SecondStage(Protocol):
    """What evaluation needs of a second stage (``imgorigin.twostage.TwoStageAttributor``)."""

    def attribute(self, features: np.ndarray, paths: Sequence[str], progress: bool = False) -> list[dict]:
        """Records with label, known, known_score, rule, verification and features.best_known (or error)."""

    def settings(self) -> dict[str, Any]:
        """The settings a metrics file records."""


@dataclass(frozen=True)
class Evaluation:
    """metrics.json's content, and the answers of the known and unknown images it was computed from."""

    metrics: dict[str, Any]
    known: Answers
    unknown: Answers


def timed(compute: Callable[[], T]) -> tuple[T, float]:
    """compute()'s result and the wall-clock seconds it took."""
    start = time.perf_counter()
    result = compute()
    return result, time.perf_counter() - start


def feature_answers(classifier: OpenSetClassifier, features: np.ndarray) -> Answers:
    """Stage 1 alone: the classifier's labels and its rejection score."""
    return Answers(
        classifier.predict(features).astype(str),
        classifier.predict_closed_set(features).astype(str),
        classifier.score_samples(features),
    )


def two_stage_answers(records: Sequence[dict]) -> Answers:
    """Two-stage records as answers: the accepted class, else the features' best guess, closes the set."""
    return Answers(
        np.array([r["label"] for r in records]),
        np.array([r["label"] if r["known"] else r["features"]["best_known"] for r in records]),
        np.array([r["known_score"] for r in records], dtype=float),
    )


def summary(known_y: np.ndarray, known: Answers, unknown: Answers) -> dict[str, float]:
    """Headline numbers of either mode: accuracy, AUROC, OSCR, TPR at 5 % FPR, and the decision's rates."""
    return {
        **open_set_summary(known_y, known.closed, known.scores, unknown.scores),
        "known_accepted": float(np.mean(~np.isin(known.labels, REJECTED))),
        "unknown_rejected": float(np.mean(np.isin(unknown.labels, REJECTED))),
    }


def open_set_metrics(
    classifier: OpenSetClassifier,
    known_y: np.ndarray,
    known: Answers,
    unknown_source: np.ndarray,
    unknown: Answers,
) -> dict[str, Any]:
    """Summary, operating point, per-class and per-unknown-source tables and the open-set confusion matrix."""
    per_class = {
        label: {
            "n": int(mask.sum()),
            "closed_set_accuracy": float(np.mean(known.closed[mask] == label)),
            "accepted": float(np.mean(~np.isin(known.labels[mask], REJECTED))),
            "open_set_correct": float(np.mean(known.labels[mask] == label)),
        }
        for label in classifier.classes_
        if (mask := known_y == label).any()
    }
    per_source = {}
    for source in sorted(set(unknown_source)):
        given = unknown.labels[unknown_source == source]
        taken = Counter(given[~np.isin(given, REJECTED)].tolist()).most_common(1)
        per_source[source] = {
            "n": int(given.size),
            "rejected": float(np.mean(np.isin(given, REJECTED))),
            "most_often_taken_for": taken[0][0] if taken else None,
        }
    predicted = np.concatenate([known.labels, unknown.labels])
    labels = [*classifier.classes_.tolist(), UNKNOWN, *([INCONCLUSIVE] if INCONCLUSIVE in predicted else [])]
    truth = np.concatenate([known_y, np.full(len(unknown.labels), UNKNOWN)])
    matrix = confusion_matrix(truth, predicted, labels)
    return {
        **summary(known_y, known, unknown),
        "threshold": classifier.threshold_ if np.isfinite(classifier.threshold_) else None,
        "accept_rate": classifier.accept_rate,
        "n_images": {"known": len(known_y), "unknown": len(unknown.labels)},
        "per_class": per_class,
        "per_unknown_source": per_source,
        "confusion_matrix": {"labels": labels, "rows_true_columns_predicted": matrix.tolist()},
    }


def unknown_sources(folders: Sequence[str | os.PathLike[str]]) -> dict[str, list[Path]]:
    """Images of each unknown source, named after its folder (folders with the same name are one source)."""
    sources: dict[str, list[Path]] = {}
    for folder in folders:
        sources.setdefault(Path(folder).name, []).extend(find_images([folder]))
    return sources


def evaluate(
    attributor: Attributor,
    known: Mapping[str, Sequence[str | os.PathLike[str]]],
    unknown: Mapping[str, Sequence[str | os.PathLike[str]]],
    *,
    two_stage: SecondStage | None = None,
    classifier_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> Evaluation:
    """Measure on held-out images of the known classes and images of unknown sources (both by name).

    With ``two_stage`` the answers are its records' (features-only speed is measured too). Images per second
    are wall time of this run: cached features or scores count as computed.
    """
    clf = attributor.classifier
    strangers = sorted(set(known) - set(clf.classes_))
    if strangers:
        raise UsageError(
            f"--known has folders that are not classes of the classifier: {', '.join(strangers)} "
            f"(classes: {', '.join(clf.classes_)}); pass such sources with --unknown"
        )
    label_of = {os.fspath(p): label for label, paths in known.items() for p in paths}
    source_of = {os.fspath(p): name for name, paths in unknown.items() for p in paths}
    (known_set, unknown_set), embed_seconds = timed(
        lambda: (
            attributor.embed(list(label_of), progress=progress),
            attributor.embed(list(source_of), progress=progress),
        )
    )
    if not known_set.paths or not unknown_set.paths:
        raise UsageError("need at least one readable known image and one readable unknown image")
    features = np.concatenate([known_set.features, unknown_set.features])
    paths = [*known_set.paths, *unknown_set.paths]
    known_y = np.array([label_of[p] for p in known_set.paths])
    unknown_source = np.array([source_of[p] for p in unknown_set.paths])
    errors = [*known_set.errors, *unknown_set.errors]
    answers, seconds = timed(lambda: feature_answers(clf, features))
    speed = {"features": len(paths) / (embed_seconds + seconds)}
    if two_stage is not None:
        records, seconds = timed(lambda: two_stage.attribute(features, paths, progress=progress))
        speed["two-stage"] = len(paths) / (embed_seconds + seconds)
        errors += [(r["path"], r["error"]) for r in records if "error" in r]
        decided = np.array(["error" not in r for r in records], dtype=bool)
        known_y, unknown_source = known_y[decided[: len(known_y)]], unknown_source[decided[len(known_y) :]]
        records = [r for r in records if "error" not in r]
        answers = two_stage_answers(records)
    n_known = len(known_y)
    known_answers, unknown_answers = answers.part(slice(n_known)), answers.part(slice(n_known, None))
    metrics = open_set_metrics(clf, known_y, known_answers, unknown_source, unknown_answers)
    metrics["mode"] = "features" if two_stage is None else "two-stage"
    metrics["images_per_second"] = speed
    if two_stage is not None:
        metrics["two_stage"] = {
            **two_stage.settings(),
            "rules": dict(sorted(Counter(r["rule"] for r in records).items())),
            "verifications": sum(len(r["verification"]) for r in records),
        }
    metrics["errors"] = [{"path": p, "error": m} for p, m in errors]
    metrics["classifier"] = {
        "path": None if classifier_path is None else str(classifier_path),
        "kind": clf.kind,
        "rejection": clf.rejection,
        "backbone": attributor.spec.id,
        "layer": attributor.spec.layer,
        "threshold_source": clf.threshold_source_,
    }
    return Evaluation(metrics, known_answers, unknown_answers)
