"""Two-stage attribution: features short-list the source, reverse-engineering confirms it.

Stage 1 ranks the known classes by the open-set classifier's probabilities. Stage 2 verifies the image
against the classes bound to a model, in that order, batched per candidate model; the first candidate whose
verification accepts the image gives the label (later candidates are skipped). When none accepts, a
feature-only class (e.g. ``real``, or a closed service without a model) can still win on features alone;
otherwise the answer is ``unknown``, or ``inconclusive`` when the evidence conflicts.

Rules, recorded in each record's ``rule``:
  ``verification``  a bound candidate's verification accepts (conformal p > α);
  ``features``      no bound candidate accepts, the features' most likely class is feature-only, and the
                    image's rejection score is typical of that class (class-conditional conformal p-value
                    above 1 - the classifier's accept rate, so each such class keeps its stated accept rate);
  ``rejected``      neither: ``unknown``;
  ``conflict``      a candidate's verification is inconclusive (the image is typical of both the model and
                    of reference real images, or outside what its calibration covers): ``inconclusive``,
                    with the verification's reasons.
``known_score`` orders images by the evidence that some known class made them: 2 + p for a verified image,
1 + p for a feature-only acceptance, and otherwise the largest p-value any class got (verification or
features), so that near-misses rank above images no known class explains.
Where features are confident in a bound class that verification rejects, the answer stays ``unknown`` (an
unseen generator that resembles a known one is the usual cause) with the reason code
``features_confident_verification_rejects``. An image that cannot be read, for its features or for a
verification, gives an error record ``{"path", "error"}``.

Bindings live beside the classifier (``bindings.json``): :class:`Bindings` loads, checks and saves them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgorigin.attribution.attributor import Attributor
from imgorigin.attribution.openset import OpenSetClassifier
from imgorigin.errors import UsageError
from imgorigin.labels import INCONCLUSIVE, INCONCLUSIVE_REASONS, MEMBER, REJECTED, UNKNOWN
from imgorigin.runtime import resolve_device
from imgorigin.verification.calibration import Calibration
from imgorigin.verification.detail import DEFAULT_ALPHA as DEFAULT_DETAIL_ALPHA
from imgorigin.verification.sources import default_calibration, load_generator
from imgorigin.verification.verifier import Verifier

BINDINGS_FILE = "bindings.json"
#: Feature confidence above which a disagreement between the stages is named in the reason codes.
STRONG_FEATURES = 0.99


@dataclass(frozen=True)
class Binding:
    """A known class bound to a generator (any MODEL spec) and, unless shipped with the zoo, its calibration."""

    label: str
    model: str
    calibration: str | None = None

    @classmethod
    def parse(cls, text: str) -> Binding:
        """``LABEL=MODEL`` or ``LABEL=MODEL@CALIBRATION`` (as given to ``--bind``)."""
        label, sep, rest = text.partition("=")
        if not sep or not label or not rest:
            raise UsageError(f"--bind {text!r}: expected LABEL=MODEL or LABEL=MODEL@CALIBRATION")
        model, _, calibration = rest.partition("@")
        return cls(label, model, calibration or None)

    def calibration_path(self) -> Path:
        """The calibration file to use: the given one, or the one the model's source ships (zoo models)."""
        if self.calibration:
            return Path(self.calibration)
        return default_calibration(self.model)


class Bindings(Mapping[str, Binding]):
    """Bindings by label: the classes of a classifier confirmed by verification, stored beside it."""

    def __init__(self, bindings: Iterable[Binding] = ()) -> None:
        self._by_label = {binding.label: binding for binding in bindings}

    def __getitem__(self, label: str) -> Binding:
        return self._by_label[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_label)

    def __len__(self) -> int:
        return len(self._by_label)

    def __repr__(self) -> str:
        return f"Bindings({list(self._by_label.values())!r})"

    @classmethod
    def parse(cls, texts: Iterable[str]) -> Bindings:
        """``--bind`` texts, each checked now to have a calibration it can find."""
        bindings = cls(Binding.parse(text) for text in texts)
        for binding in bindings.values():
            binding.calibration_path()
        return bindings

    def merged(self, other: Mapping[str, Binding], unbind: Iterable[str] = ()) -> Bindings:
        """These bindings with ``other``'s added or replacing same-label ones, and the ``unbind`` labels removed."""
        merged = {**self._by_label, **other}
        dropped = set(unbind)
        return Bindings(binding for label, binding in merged.items() if label not in dropped)

    def check(self, classes: Sequence[str]) -> None:
        """Every bound label must be one of the classes, and every binding must find its calibration."""
        strangers = sorted(set(self) - set(classes))
        if strangers:
            raise UsageError(
                f"cannot bind {', '.join(strangers)}: not a class of this classifier ({', '.join(classes)})"
            )
        for binding in self.values():
            binding.calibration_path()  # fail now, not at attribution time

    def models(self) -> dict[str, str]:
        """The bound model of each label, sorted by label (as metrics and results files record them)."""
        return {label: binding.model for label, binding in sorted(self.items())}

    @classmethod
    def load(cls, classifier_dir: str | os.PathLike[str]) -> Bindings:
        """The bindings stored beside a classifier (none when the file is absent)."""
        path = Path(classifier_dir) / BINDINGS_FILE
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text())
            return cls(Binding(label, entry["model"], entry.get("calibration")) for label, entry in data.items())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UsageError(f"cannot read the bindings of {classifier_dir}: {exc}") from exc

    def save(self, classifier_dir: str | os.PathLike[str]) -> Path:
        """Write the bindings beside the classifier saved in ``classifier_dir``, checked against its classes."""
        self.check(OpenSetClassifier.load(classifier_dir).classes_.tolist())
        path = Path(classifier_dir) / BINDINGS_FILE
        data = {label: {"model": b.model, "calibration": b.calibration} for label, b in sorted(self.items())}
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path


class TwoStageAttributor:
    """An attributor whose bound classes are confirmed by verification against their models.

    ``cache_dir`` None keeps verification scores in memory only (the CLI passes the default cache folder).
    """

    def __init__(
        self,
        attributor: Attributor,
        bindings: Mapping[str, Binding],
        *,
        alpha: float = 0.05,
        top_k: int | None = None,
        min_probability: float = 0.0,
        device: str | torch.device | None = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        detail_alpha: float | None = DEFAULT_DETAIL_ALPHA,
    ) -> None:
        if not bindings:
            raise UsageError("two-stage attribution needs at least one class bound to a model (--bind LABEL=MODEL)")
        if not 0 <= min_probability < 1:
            raise UsageError(f"min_probability must be in [0, 1), got {min_probability}")
        self.attributor, self.bindings, self.alpha = attributor, Bindings(bindings.values()), alpha
        self.top_k, self.min_probability = top_k, min_probability
        self.device, self.cache_dir, self.detail_alpha = device, cache_dir, detail_alpha
        self._verifiers: dict[str, Verifier] = {}

    @property
    def classifier(self) -> OpenSetClassifier:
        """Stage 1: the open-set classifier."""
        return self.attributor.classifier

    def settings(self) -> dict[str, Any]:
        """The settings a metrics or results file records: alpha, the candidates' limits, the bound models."""
        return {
            "alpha": self.alpha,
            "top_k": self.top_k,
            "min_probability": self.min_probability,
            "bound": self.bindings.models(),
        }

    def identity(self) -> dict:
        """The attributor's run identity plus the two-stage settings and each bound model's own identity."""
        self.load_verifiers()
        return {
            **self.attributor.identity(),
            "task": "attribute-two-stage",
            "alpha": self.alpha,
            "top_k": self.top_k,
            "min_probability": self.min_probability,
            "bound": {label: self.verifier(label).identity() for label in sorted(self.bindings)},
        }

    def verifier(self, label: str) -> Verifier:
        """The loaded generator and calibration of a bound class (loaded once)."""
        if label not in self._verifiers:
            binding = self.bindings[label]
            calibration = Calibration.load(binding.calibration_path())
            generator = load_generator(binding.model, device=resolve_device(self.device), sampler=calibration.sampler)
            self._verifiers[label] = Verifier(
                generator, calibration, alpha=self.alpha, cache_dir=self.cache_dir, detail_alpha=self.detail_alpha
            )
        return self._verifiers[label]

    def load_verifiers(self) -> None:
        """Load every bound model and calibration now, so that a bad binding fails before a long run does."""
        for label in self.bindings:
            self.verifier(label)

    def candidates(self, probabilities: np.ndarray) -> list[list[str]]:
        """Per image, the bound classes to verify, most probable first: the top-K classes by features, less
        those the features rule out (probability below ``min_probability``)."""
        classes = self.classifier.classes_
        ranked = np.argsort(-probabilities, axis=1)
        if self.top_k is not None:
            ranked = ranked[:, : self.top_k]
        return [
            [str(classes[j]) for j in row if str(classes[j]) in self.bindings and p[j] >= self.min_probability]
            for row, p in zip(ranked, probabilities, strict=True)
        ]

    def attribute_paths(self, paths: Sequence[str | os.PathLike[str]], *, progress: bool = False) -> Iterator[dict]:
        """Self-contained two-stage records for files and folders (features by the attributor's backbone), each
        as soon as it is decided; unreadable files yield ``{"path", "error"}``, skipped ones ``{"path", "skipped"}``."""
        return self.attributor.decide_paths(paths, lambda x, found: self.decided(x, found, progress), progress=progress)

    def attribute(self, features: np.ndarray, paths: Sequence[str], progress: bool = False) -> list[dict]:
        """Two-stage records (feature evidence, per-candidate verification, decision) for embedded images, in
        input order; an image that verification cannot read gives ``{"path", "error"}``."""
        by_path = {record["path"]: record for record in self.decided(features, paths, progress)}
        return [by_path[path] for path in paths]

    def decided(self, features: np.ndarray, paths: Sequence[str], progress: bool = False) -> Iterator[dict]:
        """The records of :meth:`attribute` in the order images are decided: an image is final once a candidate
        accepts it or its last candidate has been verified, so a long run writes records as it goes."""
        clf = self.classifier
        probabilities = clf.predict_proba(features)
        feature_labels = clf.predict(features)
        feature_scores = clf.score_samples(features)
        feature_p = clf.class_p_values(features)
        candidates = self.candidates(probabilities)
        evidence: list[dict[str, dict]] = [{} for _ in paths]
        accepted: list[str | None] = [None] * len(paths)
        unreadable: set[int] = set()

        def final(i: int) -> dict:
            return self._record(
                paths[i],
                probabilities[i],
                str(feature_labels[i]),
                float(feature_scores[i]),
                float(feature_p[i]),
                candidates[i],
                evidence[i],
                accepted[i],
            )

        yield from (final(i) for i, cands in enumerate(candidates) if not cands)
        for round_ in range(max((len(c) for c in candidates), default=0)):
            by_label: dict[str, list[int]] = {}
            for i, cands in enumerate(candidates):
                if accepted[i] is None and i not in unreadable and round_ < len(cands):
                    by_label.setdefault(cands[round_], []).append(i)
            for label, rows in by_label.items():
                row_of = {paths[i]: i for i in rows}
                for result in self.verifier(label).verify_paths([paths[i] for i in rows], progress=progress):
                    i = row_of[result["path"]]
                    if "score" not in result:  # unreadable (or refused) by verification: no verdict for it
                        unreadable.add(i)
                        yield {"path": paths[i], "error": result.get("error") or result.get("skipped")}
                        continue
                    evidence[i][label] = {
                        "score": result["score"],
                        "p_value": result["p_value"],
                        "p_value_real": result["p_value_real"],
                        "verdict": result["verdict"],
                        "reasons": [r for r in result["reasons"] if r in INCONCLUSIVE_REASONS],
                    }
                    if result["verdict"] == MEMBER:
                        accepted[i] = label
                    if accepted[i] is not None or round_ == len(candidates[i]) - 1:
                        yield final(i)

    def _record(
        self,
        path: str,
        probs: np.ndarray,
        feature_label: str,
        feature_score: float,
        feature_p: float,
        candidates: list[str],
        evidence: dict[str, dict],
        accepted: str | None,
    ) -> dict:
        """One image's record from its feature evidence and the verifications of its candidates (see the rules)."""
        clf = self.classifier
        reasons: list[str] = []
        confidence = float(probs.max())
        top = str(clf.classes_[int(probs.argmax())])
        feature_only = top not in self.bindings
        if accepted is not None:
            label, rule = accepted, "verification"
            known_score = 2 + evidence[accepted]["p_value"]
            if feature_label not in (accepted, UNKNOWN) and confidence >= STRONG_FEATURES:
                reasons.append("features_disagree")
        elif any(e["verdict"] == INCONCLUSIVE for e in evidence.values()):
            label, rule = INCONCLUSIVE, "conflict"
            reasons.extend(dict.fromkeys(r for e in evidence.values() for r in e["reasons"]))
            known_score = max(e["p_value"] for e in evidence.values())
        elif feature_only and feature_p > 1 - clf.accept_rate:
            label, rule = top, "features"
            known_score = 1 + feature_p
        else:
            label, rule = UNKNOWN, "rejected"
            known_score = max([e["p_value"] for e in evidence.values()] + [feature_p if feature_only else 0.0])
            if top in self.bindings and confidence >= STRONG_FEATURES and top in evidence:
                reasons.append("features_confident_verification_rejects")
        return {
            "path": path,
            "label": label,
            "known": label not in REJECTED,
            "rule": rule,
            "known_score": known_score,
            "reasons": reasons,
            "alpha": self.alpha,
            "features": {
                "label": feature_label,
                "best_known": top,
                "confidence": confidence,
                "rejection_score": feature_score,
                "threshold": clf.threshold_,
                "p_value": feature_p,
                "scores": dict(zip(clf.classes_.tolist(), probs.tolist(), strict=True)),
            },
            "candidates": candidates,
            "verification": {label_: {**e, "model": self.bindings[label_].model} for label_, e in evidence.items()},
        }
