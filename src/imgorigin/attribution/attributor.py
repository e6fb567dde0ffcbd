"""Attribution of image files: a frozen backbone and an open-set classifier fitted on its features.

Flow: labelled folders → features (cached by content) → :class:`~imgorigin.attribution.openset.OpenSetClassifier`
→ one self-contained record per image. The classifier carries the :class:`BackboneSpec` of its features, so a
saved attributor (``imgorigin fit`` writes the same folder as :meth:`Attributor.save`) rebuilds its backbone and
refuses other weights.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from imgorigin.attribution.features import DEFAULT_BACKBONE, Backbone, BackboneError, create_backbone, embed_paths
from imgorigin.attribution.features.cache import Embedded
from imgorigin.attribution.openset import CLASSIFIERS, OpenSetClassifier
from imgorigin.attribution.spec import BackboneSpec
from imgorigin.errors import UsageError
from imgorigin.images import find_images, scan_inputs
from imgorigin.labels import UNKNOWN
from imgorigin.runtime import resolve_device, sha256_file
from imgorigin.version import __version__

#: Images embedded and decided per chunk by ``attribute_paths``: records stream out, memory stays bounded.
CHUNK = 256
#: Decision records of embedded images, one per path, in any order: ``decide(features [N, D], paths)``.
Decide = Callable[[np.ndarray, list[str]], Iterable[dict]]


def class_folders(root: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """Images of each class: one label per non-hidden sub-folder of root (searched recursively)."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = {folder.name: found for folder in folders if (found := find_images([folder]))}
    if not classes:
        raise UsageError(
            f"{root} has no sub-folder with images: put each known source's images in a folder named after it"
        )
    return classes


class Attributor:
    """An open-set classifier and the live backbone whose features it was fitted on: files in, records out.

    ``backbone`` may be None for a classifier used on features only (``attribute``); embedding files needs it.
    """

    def __init__(
        self,
        classifier: OpenSetClassifier,
        backbone: Backbone | None = None,
        *,
        batch_size: int = 64,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        spec = classifier.backbone_
        if backbone is not None and spec is None:
            raise UsageError("the classifier has no backbone spec (fitted on arrays): fit it with backbone=SPEC")
        if backbone is not None and backbone.id != spec.id:
            raise BackboneError(
                f"backbone {backbone.name!r} has weights {backbone.id}, but the classifier was fitted on {spec.id}"
            )
        self.classifier, self.backbone = classifier, backbone
        self.batch_size, self.cache_dir = batch_size, cache_dir

    @classmethod
    def fit(
        cls,
        train_dir: str | os.PathLike[str],
        *,
        backbone: str = DEFAULT_BACKBONE,
        layer: str | int | None = None,
        classifier: str = "linear",
        rejection: str = "msp",
        accept_rate: float = 0.95,
        val_unknown: Sequence[str | os.PathLike[str]] | None = None,
        seed: int = 0,
        batch_size: int = 64,
        cache_dir: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = "auto",
        progress: bool = False,
    ) -> Attributor:
        """Fit on a folder with one sub-folder of images per known source (as ``imgorigin fit``).

        ``val_unknown``: images of other sources, used only to choose hyper-parameters. Unreadable images are
        skipped and listed in ``classifier.training_.errors``.
        """
        if classifier not in CLASSIFIERS:
            raise UsageError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {classifier!r}")
        model = CLASSIFIERS[classifier](rejection=rejection, accept_rate=accept_rate, random_state=seed)
        classes = class_folders(train_dir)
        extractor = create_backbone(backbone, device=resolve_device(device))
        spec = BackboneSpec.of(extractor, layer)
        unknown_paths = find_images(val_unknown or [])
        label_of = {str(p): label for label, paths in classes.items() for p in paths}
        options = {"cache_dir": cache_dir, "batch_size": batch_size, "progress": progress}
        known = embed_paths(extractor, list(label_of), spec.layer, **options)
        unknown = embed_paths(extractor, unknown_paths, spec.layer, **options) if unknown_paths else None
        model.fit(
            known.features,
            np.array([label_of[p] for p in known.paths]),
            X_unknown=None if unknown is None else unknown.features,
            backbone=spec,
            train_dir=str(train_dir),
            skipped=[*known.errors, *([] if unknown is None else unknown.errors)],
        )
        return cls(model, extractor, batch_size=batch_size, cache_dir=cache_dir)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        backbone: str | None = None,
        batch_size: int = 64,
        cache_dir: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = "auto",
    ) -> Attributor:
        """An attributor saved by ``save`` or ``imgorigin fit``; ``backbone`` loads its weights from elsewhere."""
        classifier = OpenSetClassifier.load(path)
        if classifier.backbone_ is None:
            raise UsageError(f"classifier {path} has no backbone spec: it was fitted on arrays, not on image files")
        extractor = classifier.backbone_.create(name=backbone, device=device)
        return cls(classifier, extractor, batch_size=batch_size, cache_dir=cache_dir)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the classifier with its backbone spec (classifier.json + weights.safetensors)."""
        self.classifier.save(path)

    def identity(self) -> dict:
        """What a run's labels depend on (classifier, threshold, features, version): a results file records it, so
        that resuming it with another classifier or threshold is refused instead of mixing runs."""
        return {
            "task": "attribute",
            "classifier": self.classifier.digest(),
            "threshold": self.classifier.threshold_,
            "backbone": self.spec.id,
            "layer": self.spec.layer,
            "version": __version__,
        }

    @property
    def spec(self) -> BackboneSpec:
        """Which features the classifier takes."""
        return self.classifier.backbone_

    def embed(self, paths: Sequence[str | os.PathLike[str]], *, progress: bool = False) -> Embedded:
        """Features of image files through the cache: (features [N, D], readable paths, (path, message) errors)."""
        if self.backbone is None:
            raise UsageError("this attributor has no backbone: load it with Attributor.load to embed files")
        return embed_paths(
            self.backbone, paths, self.spec.layer, self.cache_dir, batch_size=self.batch_size, progress=progress
        )

    def attribute(self, features: np.ndarray, paths: Sequence[str]) -> list[dict]:
        """Decision records for embedded images: label ('unknown' when rejected), scores, rejection evidence."""
        clf = self.classifier
        if not len(paths):
            return []
        probabilities = clf.predict_proba(features)
        scores = clf.score_samples(features)
        labels = clf.predict(features)
        best = clf.classes_[probabilities.argmax(axis=1)]
        return [
            {
                "path": path,
                "label": str(label),
                "known": bool(label != UNKNOWN),
                "confidence": float(probs.max()),
                "scores": dict(zip(clf.classes_.tolist(), probs.tolist(), strict=True)),
                "best_known": str(top),
                "rejection": clf.rejection,
                "rejection_score": float(score),
                "threshold": clf.threshold_,
            }
            for path, label, probs, top, score in zip(paths, labels, probabilities, best, scores, strict=True)
        ]

    def attribute_paths(self, paths: Sequence[str | os.PathLike[str]], *, progress: bool = False) -> Iterator[dict]:
        """Self-contained records for files and folders, in input order as they are decided; unreadable files
        yield ``{"path", "error"}``."""
        return self.decide_paths(paths, self.attribute, progress=progress)

    def decide_paths(
        self, paths: Sequence[str | os.PathLike[str]], decide: Decide, *, progress: bool = False
    ) -> Iterator[dict]:
        """Embed files chunk by chunk and yield ``decide``'s records (as it yields them) stamped with the image's
        sha256 and the features' backbone and layer; inputs left out yield ``{"path", "skipped"}``, unreadable
        files ``{"path", "error"}``."""
        images, skipped = scan_inputs(paths)
        yield from skipped
        files = [os.fspath(p) for p in images]
        for start in range(0, len(files), CHUNK):
            part = files[start : start + CHUNK]
            embedded = self.embed(part, progress=progress)
            position = {path: i for i, path in enumerate(part)}
            errors = deque(sorted(embedded.errors, key=lambda error: position[error[0]]))
            for record in decide(embedded.features, embedded.paths) if embedded.paths else ():
                while errors and position[errors[0][0]] < position[record["path"]]:  # keep input order where
                    yield dict(zip(("path", "error"), errors.popleft(), strict=True))  # decide keeps it
                yield self._stamped(record)
            yield from (dict(zip(("path", "error"), error, strict=True)) for error in errors)

    def _stamped(self, record: dict) -> dict:
        """A record with its image's sha256 and the features it was attributed from (error records unchanged)."""
        if "error" in record:
            return record
        return {
            "path": record["path"],
            "sha256": sha256_file(record["path"]),
            **record,
            "backbone": self.spec.id,
            "layer": self.spec.layer,
        }
