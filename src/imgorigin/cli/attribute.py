"""``imgorigin fit``, ``attribute``, ``evaluate`` and ``bench attribute``: open-set attribution from features."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import numpy as np
import typer

from imgorigin.cli.bind import BIND_HELP, apply_bindings
from imgorigin.cli.common import DeviceOpt, fail, progress_enabled
from imgorigin.runtime import default_cache_dir, resolve_device, sha256_file

if TYPE_CHECKING:
    from imgorigin.attribution.features import Backbone
    from imgorigin.attribution.features.cache import Embedded
    from imgorigin.attribution.openset import OpenSetClassifier
    from imgorigin.twostage import Binding, TwoStageAttributor

T = TypeVar("T")

# Spelled out rather than imported from imgorigin.attribution.openset, which would load scikit-learn for every command.
Classifier = Enum("Classifier", {"linear": "linear", "knn": "knn"}, type=str)
Rejection = Enum("Rejection", {name: name for name in ("msp", "maxlogit", "energy", "mahalanobis", "knn")}, type=str)

CacheOpt = Annotated[
    Path | None, typer.Option(help="Feature cache folder (default $IMGORIGIN_CACHE or ~/.cache/imgorigin).")
]
BatchOpt = Annotated[int, typer.Option(min=1, help="Images per forward pass of the backbone.")]
BackboneOverrideOpt = Annotated[
    str | None,
    typer.Option(
        "--backbone",
        help="Load the classifier's backbone from here instead (e.g. clip:NEW_DIR after moving "
        "the model); its weights must be the ones the classifier was fitted on.",
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        help="Rejection threshold to use instead of the classifier's own (scores below it are 'unknown'). "
        "Features-only mode; with --confirm a class without a model is accepted by its own held-out scores "
        "(class-conditional p-value above 1 - the classifier's accept rate)."
    ),
]
ConfirmOpt = Annotated[
    bool,
    typer.Option(
        "--confirm",
        help="Two-stage: verify each image against the models bound to its most likely classes "
        "(CLF/bindings.json); a bound class is answered only when verification accepts the image.",
    ),
]
TopKOpt = Annotated[
    int | None,
    typer.Option(
        "--top-k",
        min=1,
        help="With --confirm: verify only the K most likely classes by features (default: "
        "every bound class, most likely first, until one accepts).",
    ),
]
MinProbabilityOpt = Annotated[
    float,
    typer.Option(
        "--min-probability",
        min=0.0,
        max=0.999,
        help="With --confirm: skip bound classes whose feature probability "
        "is below this (the features rule them out), to save inversions; 0 verifies every candidate.",
    ),
]
AlphaOpt = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="With --confirm: level of verification (a bound class accepts an image when its "
        "conformal p-value > alpha).",
    ),
]


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Images of each class: one label per non-hidden sub-folder of root (searched recursively)."""
    from imgorigin.images import ImageError, find_images

    if not root.is_dir():
        fail(f"{root} is not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    try:
        classes = {folder.name: find_images([folder]) for folder in folders}
    except ImageError as exc:
        fail(str(exc))
    classes = {label: paths for label, paths in classes.items() if paths}
    if not classes:
        fail(f"{root} has no sub-folder with images: put each known source's images in a folder named after it")
    return classes


def _backbone(name: str, device: str, expected_id: str | None = None) -> Backbone:
    """Create a backbone, turning a missing model or a weights mismatch into a clean exit."""
    from imgorigin.attribution.features import BackboneError, create_backbone

    try:
        backbone = create_backbone(name, device=resolve_device(device))
    except BackboneError as exc:
        fail(str(exc))
    if expected_id is not None and backbone.id != expected_id:
        fail(f"backbone {name!r} has weights {backbone.id}, but the classifier was fitted on {expected_id}")
    return backbone


def _warn_skipped(errors: list[tuple[str, str]]) -> None:
    """One stderr line per image that could not be used."""
    for path, message in errors:
        typer.echo(f"warning: skipped {path}: {message}", err=True)


def _embed(backbone: Backbone, paths: list[Path], layer: str, cache_dir: Path | None, batch_size: int) -> Embedded:
    """Features through the cache, with unreadable images reported on stderr and returned as errors."""
    from imgorigin.attribution.features import embed_paths

    result = embed_paths(
        backbone, paths, layer, cache_dir=cache_dir, batch_size=batch_size, progress=progress_enabled()
    )
    _warn_skipped(result.errors)
    return result


def _load_classifier(path: Path, threshold: float | None) -> OpenSetClassifier:
    """A saved classifier, with an optional threshold override."""
    from imgorigin.attribution.openset import load_classifier

    try:
        classifier = load_classifier(path)
    except (OSError, ValueError, KeyError) as exc:
        fail(f"cannot read classifier {path}: {exc}")
    if threshold is not None:
        classifier.threshold_ = threshold
    return classifier


def fit(
    train_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder with one sub-folder of images per known source, named after it ('real' is an ordinary class)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder to write the classifier to (classifier.json + weights.safetensors)."),
    ],
    backbone: Annotated[
        str,
        typer.Option(
            help="Feature extractor: efficientnet-lite0 (shipped), spectrum, "
            "clip:DIR or dinov2:DIR (local model folder or offline HF "
            "cache id)."
        ),
    ] = "efficientnet-lite0",
    layer: Annotated[
        str | None,
        typer.Option(
            help="Backbone layer to take features from (block index or stage name); default: the backbone's own."
        ),
    ] = None,
    classifier: Annotated[
        Classifier, typer.Option(help="linear: logistic-regression probe; knn: cosine k-nearest neighbours.")
    ] = Classifier.linear,
    rejection: Annotated[
        Rejection,
        typer.Option(
            help="Score that decides 'unknown': msp (max softmax "
            "probability), maxlogit, energy, mahalanobis, knn "
            "(nearest training image)."
        ),
    ] = Rejection.msp,
    accept_rate: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Fraction of known images the threshold accepts (set on held-out known images)."
        ),
    ] = 0.95,
    val_unknown: Annotated[
        list[Path] | None,
        typer.Option(
            "--val-unknown",
            help="Images of sources outside the known ones (files or folders), used only to "
            "choose hyper-parameters; never the images you will test on.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the validation split and folds.")] = 0,
    bind: Annotated[list[str] | None, typer.Option("--bind", metavar="LABEL=MODEL[@CAL]", help=BIND_HELP)] = None,
    batch_size: BatchOpt = 64,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Fit an open-set classifier on labelled folders: features from a frozen backbone + a light classifier."""
    from imgorigin.attribution.openset import CLASSIFIERS
    from imgorigin.images import ImageError, find_images

    _parse_bindings(bind or [])  # fail on a malformed --bind before any fitting is done
    classes = _class_folders(train_dir)
    extractor = _backbone(backbone, device)
    try:
        layer_name = extractor.resolve_layer(layer)
        unknown_paths = find_images(val_unknown or [])
    except (ValueError, ImageError) as exc:
        fail(str(exc))
    label_of = {str(p): label for label, paths in classes.items() for p in paths}
    known = _embed(extractor, [p for paths in classes.values() for p in paths], layer_name, cache_dir, batch_size)
    unknown = _embed(extractor, unknown_paths, layer_name, cache_dir, batch_size) if unknown_paths else None
    labels = np.array([label_of[p] for p in known.paths])
    try:
        model = CLASSIFIERS[classifier.value](rejection=rejection.value, accept_rate=accept_rate, random_state=seed)
        model.fit(known.features, labels, X_unknown=None if unknown is None else unknown.features)
    except ValueError as exc:
        fail(str(exc))
    counts = Counter(labels.tolist())
    model.metadata = {
        "backbone": extractor.name,
        "backbone_id": extractor.id,
        "layer": layer_name,
        "preprocess": extractor.preprocess_id,
        "train_dir": str(train_dir),
        "train_counts": {label: counts[label] for label in model.classes_},
        "val_unknown_images": 0 if unknown is None else len(unknown.paths),
        "errors": [{"path": p, "error": m} for p, m in known.errors],
    }
    model.save(out)
    bound = apply_bindings(out, bind, []) if bind else {}
    typer.echo(
        f"fitted {classifier.value} ({rejection.value}) on {len(labels)} images of {len(counts)} classes "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}) with {extractor.id} layer "
        f"{layer_name}; {model.selection_}; threshold {model.threshold_:.4g} "
        f"({model.threshold_source_}); bound: {', '.join(sorted(bound)) or 'none'} -> {out}",
        err=True,
    )


def _parse_bindings(texts: list[str]) -> dict[str, Binding]:
    """--bind options by label, each with a calibration it can find; a clean exit on a malformed one."""
    from imgorigin.twostage import Binding

    try:
        bindings = [Binding.parse(text) for text in texts]
        for binding in bindings:
            binding.calibration_path()
    except (OSError, KeyError, ValueError) as exc:
        fail(str(exc))
    return {binding.label: binding for binding in bindings}


def attribute(
    classifier_dir: Annotated[
        Path, typer.Argument(metavar="CLF", help="Classifier folder written by `imgorigin fit`.")
    ],
    paths: Annotated[list[Path], typer.Argument(help="Images or folders (searched recursively).")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="JSON-lines file (default: stdout). An existing file is resumed: answered paths are skipped.",
        ),
    ] = None,
    threshold: ThresholdOpt = None,
    confirm: ConfirmOpt = False,
    top_k: TopKOpt = None,
    min_probability: MinProbabilityOpt = 0.0,
    alpha: AlphaOpt = 0.05,
    backbone: BackboneOverrideOpt = None,
    batch_size: BatchOpt = 64,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Attribute each image to a known source or 'unknown'; one JSON record per image.

    Record: path, sha256, label ('unknown' when rejected), known, confidence (probability of the most
    likely known source), scores (probability per known source), best_known, rejection score and
    threshold. With --confirm: label (a class, 'unknown' or 'inconclusive'), known, rule (verification,
    features, rejected or conflict), known_score, reasons, features (the stage-1 evidence), candidates and
    verification (p-values per verified class). Exit status 1 when some images could not be read (their
    records hold "error").
    """
    from imgorigin.images import ImageError, find_images
    from imgorigin.records import RecordWriter

    model = _load_classifier(classifier_dir, threshold)
    two_stage = _two_stage(classifier_dir, model, alpha, top_k, min_probability, device, cache_dir) if confirm else None
    meta = model.metadata
    extractor = _backbone(backbone or meta["backbone"], device, meta["backbone_id"])
    try:
        found = find_images(paths)
    except ImageError as exc:
        fail(str(exc))
    with RecordWriter(output) as writer:
        todo = [p for p in found if str(p) not in writer.done]
        if len(todo) < len(found):
            typer.echo(f"resuming: {len(found) - len(todo)} of {len(found)} images already answered", err=True)
        result = _embed(extractor, todo, meta["layer"], cache_dir, batch_size)
        records = dict(
            _attribution_records(model, result.features, result.paths)
            if two_stage is None
            else _two_stage_records(two_stage, result.features, result.paths)
        )
        records |= {path: {"path": path, "error": message} for path, message in result.errors}
        for path in todo:
            writer.write(records[str(path)])
    typer.echo(f"{writer.written} records, {writer.errors} unreadable images", err=True)
    raise typer.Exit(1 if writer.errors else 0)


def _two_stage(
    classifier_dir: Path,
    model: OpenSetClassifier,
    alpha: float,
    top_k: int | None,
    min_probability: float,
    device: str,
    cache_dir: Path | None,
) -> TwoStageAttributor:
    """The classifier with the bindings stored beside it, or a clean exit when none is bound."""
    from imgorigin.twostage import load_bindings

    try:
        bindings = load_bindings(classifier_dir)
    except (OSError, KeyError, ValueError) as exc:
        fail(f"cannot read the bindings of {classifier_dir}: {exc}")
    if not bindings:
        fail(
            f"--confirm: no class of {classifier_dir} is bound to a model; bind some with `imgorigin bind "
            f"{classifier_dir} LABEL=MODEL[@CAL]` or `imgorigin fit --bind`"
        )
    return _attributor(model, bindings, alpha, top_k, min_probability, device, cache_dir)


def _attributor(
    model: OpenSetClassifier,
    bindings: dict[str, Binding],
    alpha: float,
    top_k: int | None,
    min_probability: float,
    device: str,
    cache_dir: Path | None,
) -> TwoStageAttributor:
    """A two-stage attributor with every bound model and calibration loaded now, not halfway through a run."""
    from imgorigin.twostage import TwoStageAttributor

    try:
        attributor = TwoStageAttributor(
            model,
            bindings,
            alpha=alpha,
            top_k=top_k,
            min_probability=min_probability,
            device=resolve_device(device),
            cache_dir=cache_dir or default_cache_dir(),
        )
        for label in bindings:
            attributor.verifier(label)
    except (OSError, KeyError, ValueError) as exc:
        fail(str(exc))
    return attributor


def _two_stage_settings(
    alpha: float, top_k: int | None, min_probability: float, bindings: dict[str, Binding]
) -> dict[str, Any]:
    """The two-stage settings a metrics or results file records: alpha, candidates' limits, bound models."""
    return {
        "alpha": alpha,
        "top_k": top_k,
        "min_probability": min_probability,
        "bound": {label: b.model for label, b in sorted(bindings.items())},
    }


def _stamped(model: OpenSetClassifier, record: dict) -> dict:
    """A record with its image's sha256 and the features it was attributed from (backbone, layer)."""

    return {
        "path": record["path"],
        "sha256": sha256_file(record["path"]),
        **record,
        "backbone": model.metadata["backbone_id"],
        "layer": model.metadata["layer"],
    }


def _attribution_records(model: OpenSetClassifier, features: np.ndarray, paths: list[str]) -> list[tuple[str, dict]]:
    """(path, record) for each embedded image."""
    if not paths:
        return []
    probabilities = model.predict_proba(features)
    scores = model.score_samples(features)
    labels = model.predict(features)
    best = model.classes_[probabilities.argmax(axis=1)]
    return [
        (
            path,
            _stamped(
                model,
                {
                    "path": path,
                    "label": str(label),
                    "known": bool(label != "unknown"),
                    "confidence": float(probs.max()),
                    "scores": dict(zip(model.classes_.tolist(), probs.tolist(), strict=True)),
                    "best_known": str(top),
                    "rejection": model.rejection,
                    "rejection_score": float(score),
                    "threshold": model.threshold_,
                },
            ),
        )
        for path, label, probs, top, score in zip(paths, labels, probabilities, best, scores, strict=True)
    ]


def _two_stage_records(
    attributor: TwoStageAttributor, features: np.ndarray, paths: list[str]
) -> list[tuple[str, dict]]:
    """(path, record) for each embedded image, decided by both stages."""
    if not paths:
        return []
    records = attributor.attribute(features, paths, progress=progress_enabled())
    return [(record["path"], _stamped(attributor.classifier, record)) for record in records]


def evaluate(
    classifier_dir: Annotated[
        Path, typer.Argument(metavar="CLF", help="Classifier folder written by `imgorigin fit`.")
    ],
    known: Annotated[
        Path,
        typer.Option(
            help="Test images of the known sources: one sub-folder per class, "
            "named as in training (never the training images)."
        ),
    ],
    unknown: Annotated[
        list[Path],
        typer.Option(
            help="A folder of images from a source the classifier does "
            "not know (the folder name is the source's name); "
            "repeat, or list more folders after it."
        ),
    ],
    more_unknown: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="[UNKNOWN_DIR]...", help="More unknown-source folders, so that `--unknown A B C` works."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="metrics.json to write (default: stdout).")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Folder for plots: roc.png (known vs unknown, with the operating point) and confusion.png."),
    ] = None,
    threshold: ThresholdOpt = None,
    confirm: ConfirmOpt = False,
    top_k: TopKOpt = None,
    min_probability: MinProbabilityOpt = 0.0,
    alpha: AlphaOpt = 0.05,
    backbone: BackboneOverrideOpt = None,
    batch_size: BatchOpt = 64,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Measure a classifier on held-out known images and on images of unknown sources.

    Writes closed-set accuracy, AUROC, OSCR, TPR at 5 % FPR, the rates at the operating point, a per-source
    table, the open-set confusion matrix (rows: true class or 'unknown'), the mode and the images per second
    of each mode measured (wall time of this run: cached features or scores count as computed). With
    --confirm the labels and known-scores are the two-stage ones ('unknown' and 'inconclusive' both count as
    rejected), the records per rule are counted, and so are the verifications run (image × candidate model).
    """
    from imgorigin.images import ImageError, find_images

    model = _load_classifier(classifier_dir, threshold)
    two_stage = _two_stage(classifier_dir, model, alpha, top_k, min_probability, device, cache_dir) if confirm else None
    meta = model.metadata
    classes = _class_folders(known)
    strangers = sorted(set(classes) - set(model.classes_))
    if strangers:
        fail(
            f"--known has folders that are not classes of the classifier: {', '.join(strangers)} "
            f"(classes: {', '.join(model.classes_)}); pass such sources with --unknown"
        )
    unknown_dirs = [*unknown, *(more_unknown or [])]
    sources: dict[str, list[Path]] = {}  # folders with the same name are one source
    try:
        for folder in unknown_dirs:
            sources.setdefault(folder.name, []).extend(find_images([folder]))
    except ImageError as exc:
        fail(str(exc))
    extractor = _backbone(backbone or meta["backbone"], device, meta["backbone_id"])
    label_of = {str(p): label for label, paths in classes.items() for p in paths}
    source_of = {str(p): name for name, paths in sources.items() for p in paths}
    start = time.perf_counter()
    known_set = _embed(extractor, [p for ps in classes.values() for p in ps], meta["layer"], cache_dir, batch_size)
    unknown_set = _embed(extractor, [p for ps in sources.values() for p in ps], meta["layer"], cache_dir, batch_size)
    embed_seconds = time.perf_counter() - start
    if not known_set.paths or not unknown_set.paths:
        fail("need at least one readable known image and one readable unknown image")
    features = np.concatenate([known_set.features, unknown_set.features])
    paths = [*known_set.paths, *unknown_set.paths]
    answers, seconds = _timed(lambda: _feature_answers(model, features))
    images_per_second = {"features": len(paths) / (embed_seconds + seconds)}
    if two_stage is not None:
        records, seconds = _timed(lambda: two_stage.attribute(features, paths, progress=progress_enabled()))
        answers = _two_stage_answers(records)
        images_per_second["two-stage"] = len(paths) / (embed_seconds + seconds)
    known_y = np.array([label_of[p] for p in known_set.paths])
    metrics = _open_set_metrics(
        model,
        known_y,
        answers.part(slice(len(known_y))),
        np.array([source_of[p] for p in unknown_set.paths]),
        answers.part(slice(len(known_y), None)),
    )
    metrics["mode"] = "features" if two_stage is None else "two-stage"
    metrics["images_per_second"] = images_per_second
    if two_stage is not None:
        metrics["two_stage"] = {
            **_two_stage_settings(alpha, top_k, min_probability, two_stage.bindings),
            "rules": dict(sorted(Counter(r["rule"] for r in records).items())),
            "verifications": sum(len(r["verification"]) for r in records),
        }
    metrics["errors"] = [{"path": p, "error": m} for p, m in [*known_set.errors, *unknown_set.errors]]
    metrics["classifier"] = {
        "path": str(classifier_dir),
        "kind": model.kind,
        "rejection": model.rejection,
        "backbone": meta["backbone_id"],
        "layer": meta["layer"],
        "threshold_source": model.threshold_source_,
    }
    text = json.dumps(metrics, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    if report is not None:
        names = (
            (model.rejection, f"threshold {model.threshold_:.3g}")
            if two_stage is None
            else ("two-stage known-score", f"two-stage decision, alpha {alpha:g}")
        )
        _plot_report(answers.scores[: len(known_y)], answers.scores[len(known_y) :], *names, metrics, report)
    typer.echo(
        f"{metrics['mode']}: accuracy {metrics['closed_set_accuracy']:.3f}, AUROC {metrics['auroc']:.3f}, "
        f"OSCR {metrics['oscr']:.3f}, TPR@5%FPR {metrics['tpr_at_5_fpr']:.3f} on {len(known_y)} known and "
        f"{len(unknown_set.paths)} unknown images, {images_per_second[metrics['mode']]:.3g} images/s",
        err=True,
    )


@dataclass
class _Answers:
    """One mode's answers per image: open-set label, closed-set label (never rejected) and known-score."""

    labels: np.ndarray
    closed: np.ndarray
    scores: np.ndarray

    def part(self, rows: slice) -> _Answers:
        """The answers of some of the images."""
        return _Answers(self.labels[rows], self.closed[rows], self.scores[rows])


def _timed(compute: Callable[[], T]) -> tuple[T, float]:
    """compute()'s result and the wall-clock seconds it took."""
    start = time.perf_counter()
    result = compute()
    return result, time.perf_counter() - start


def _feature_answers(model: OpenSetClassifier, features: np.ndarray) -> _Answers:
    """Stage 1 alone: the classifier's labels and its rejection score."""
    return _Answers(
        model.predict(features).astype(str),
        model.predict_closed_set(features).astype(str),
        model.score_samples(features),
    )


def _two_stage_answers(records: list[dict]) -> _Answers:
    """Two-stage records as answers: the accepted class, else the features' best guess, closes the set."""
    return _Answers(
        np.array([r["label"] for r in records]),
        np.array([r["label"] if r["known"] else r["features"]["best_known"] for r in records]),
        np.array([r["known_score"] for r in records], dtype=float),
    )


def _summary(known_y: np.ndarray, known: _Answers, unknown: _Answers) -> dict[str, float]:
    """Headline numbers of either mode: accuracy, AUROC, OSCR, TPR at 5 % FPR, and the decision's rates."""
    from imgorigin.labels import REJECTED
    from imgorigin.metrics import open_set_summary

    return {
        **open_set_summary(known_y, known.closed, known.scores, unknown.scores),
        "known_accepted": float(np.mean(~np.isin(known.labels, REJECTED))),
        "unknown_rejected": float(np.mean(np.isin(unknown.labels, REJECTED))),
    }


def _open_set_metrics(
    model: OpenSetClassifier, known_y: np.ndarray, known: _Answers, unknown_source: np.ndarray, unknown: _Answers
) -> dict[str, Any]:
    """metrics.json's content (without errors) from either mode's answers: summary, per-source table, confusion."""
    from imgorigin.labels import INCONCLUSIVE, REJECTED, UNKNOWN
    from imgorigin.metrics import confusion_matrix

    summary = _summary(known_y, known, unknown)
    per_class = {
        label: {
            "n": int(mask.sum()),
            "closed_set_accuracy": float(np.mean(known.closed[mask] == label)),
            "accepted": float(np.mean(~np.isin(known.labels[mask], REJECTED))),
            "open_set_correct": float(np.mean(known.labels[mask] == label)),
        }
        for label in model.classes_
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
    labels = [*model.classes_.tolist(), UNKNOWN, *([INCONCLUSIVE] if INCONCLUSIVE in predicted else [])]
    truth = np.concatenate([known_y, np.full(len(unknown.labels), UNKNOWN)])
    matrix = confusion_matrix(truth, predicted, labels)
    return {
        **summary,
        "threshold": model.threshold_ if np.isfinite(model.threshold_) else None,
        "accept_rate": model.accept_rate,
        "n_images": {"known": len(known_y), "unknown": len(unknown.labels)},
        "per_class": per_class,
        "per_unknown_source": per_source,
        "confusion_matrix": {"labels": labels, "rows_true_columns_predicted": matrix.tolist()},
    }


def _plot_report(
    known_scores: np.ndarray,
    unknown_scores: np.ndarray,
    score_name: str,
    operating_point: str,
    metrics: dict,
    folder: Path,
) -> None:
    """roc.png and confusion.png in folder (matplotlib's Agg canvas, no display needed)."""
    from matplotlib.figure import Figure

    from imgorigin.metrics import roc_curve

    folder.mkdir(parents=True, exist_ok=True)
    fpr, tpr, _ = roc_curve(known_scores, unknown_scores)
    figure = Figure(figsize=(4.5, 4.5))
    axes = figure.add_subplot()
    axes.plot(fpr, tpr, label=f"AUROC {metrics['auroc']:.3f}")
    axes.plot([0, 1], [0, 1], ":", color="grey")
    axes.plot([1 - metrics["unknown_rejected"]], [metrics["known_accepted"]], "o", label=operating_point)
    axes.set(
        xlabel="unknown images accepted (FPR)",
        ylabel="known images accepted (TPR)",
        title=f"known vs unknown ({score_name})",
    )
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(folder / "roc.png", dpi=120)

    labels = metrics["confusion_matrix"]["labels"]
    matrix = np.array(metrics["confusion_matrix"]["rows_true_columns_predicted"])
    figure = Figure(figsize=(1.2 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        axes.text(
            col, row, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black"
        )
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set(xlabel="predicted", ylabel="true")
    figure.tight_layout()
    figure.savefig(folder / "confusion.png", dpi=120)


def _choices(text: str, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    """A comma-separated option as a list, every item checked against the allowed values."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    wrong = [item for item in items if item not in allowed]
    if wrong or not items:
        fail(f"{what}: {', '.join(wrong) or 'nothing given'} not among {', '.join(allowed)}")
    return items


def _rotating_splits(candidates: list[str], n_unknown: int, n_splits: int) -> list[list[str]]:
    """Unknown sources of each split: consecutive runs of ``n_unknown`` candidates, rotating (wrapping)."""
    return [[candidates[(i * n_unknown + j) % len(candidates)] for j in range(n_unknown)] for i in range(n_splits)]


def _mean_std(values: list[float]) -> str:
    """ "mean ± std" in percent (std over splits; none for a single split)."""
    mean = 100 * float(np.mean(values))
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {100 * float(np.std(values)):.1f}"


def _markdown(
    rows: list[dict[str, Any]],
    keys: tuple[str, ...] = ("layer", "classifier", "rejection", "shots"),
    timed: bool = False,
) -> str:
    """One table line per combination of the key columns, metrics (and seconds per image) averaged over splits."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    columns = [*keys, "splits", "accuracy", "AUROC", "OSCR", "TPR@5%FPR", *(["s/image"] if timed else [])]
    lines = [f"| {' | '.join(columns)} |", "|---" * len(columns) + "|"]
    for values, group in groups.items():
        cells = [_mean_std([r[key] for r in group]) for key in ("closed_set_accuracy", "auroc", "oscr", "tpr_at_5_fpr")]
        if timed:
            cells.append(f"{np.mean([r['seconds_per_image'] for r in group]):.3g}")
        lines.append(f"| {' | '.join(map(str, values))} | {len(group)} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def bench_attribute(
    data_root: Annotated[
        Path,
        typer.Argument(
            help="Folder with one sub-folder of images per source (e.g. "
            "real/ and one per generator, from `imgorigin zoo sample`); "
            "whatever sources exist are used."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder for results.json (every run) and results.md (means ± std over splits)."
        ),
    ],
    backbone: Annotated[
        str, typer.Option(help="Feature extractor (see `imgorigin fit --help`).")
    ] = "efficientnet-lite0",
    layers: Annotated[
        str, typer.Option(help="Layers to sweep: comma-separated names, 'default' or 'all'.")
    ] = "default",
    classifiers: Annotated[str, typer.Option(help="Comma-separated classifiers: linear, knn.")] = "linear,knn",
    rejections: Annotated[
        str, typer.Option(help="Comma-separated rejection scores: msp, maxlogit, energy, mahalanobis, knn.")
    ] = "msp,maxlogit,energy,mahalanobis,knn",
    shots: Annotated[
        str, typer.Option(help="Comma-separated training images per known source; 'all' = the whole training pool.")
    ] = "1,5,10,50,all",
    n_unknown: Annotated[int, typer.Option(min=1, help="Sources held out as unknown in each split.")] = 2,
    splits: Annotated[
        int, typer.Option(min=0, help="Number of splits; 0 = enough for every candidate source to be unknown once.")
    ] = 0,
    always_known: Annotated[
        str, typer.Option(help="Comma-separated sources that are never unknown (the paper keeps real images known).")
    ] = "real",
    test_fraction: Annotated[
        float,
        typer.Option(
            min=0.05, max=0.95, help="Fraction of each known source's images kept for testing, never trained on."
        ),
    ] = 0.3,
    max_per_source: Annotated[
        int, typer.Option(min=2, help="At most this many images per source (random, seeded; the paper caps at 4000).")
    ] = 4000,
    seed: Annotated[int, typer.Option(help="Seed of image subsets, train/test splits and shot sampling.")] = 0,
    confirm: Annotated[
        bool,
        typer.Option(
            "--confirm",
            help="Also attribute in two stages in every split, with the first layer, classifier and "
            "rejection trained on the whole pool: a features and a two-stage row per split (results.json "
            "'two_stage_rows'), each with seconds per image (features are extracted once, for both).",
        ),
    ] = False,
    bind: Annotated[
        list[str] | None,
        typer.Option(
            "--bind",
            metavar="LABEL=MODEL[@CAL]",
            help=f"With --confirm: {BIND_HELP} LABEL is a source folder; "
            "in the splits where it is unknown its binding is unused.",
        ),
    ] = None,
    top_k: TopKOpt = None,
    min_probability: MinProbabilityOpt = 0.0,
    alpha: AlphaOpt = 0.05,
    batch_size: BatchOpt = 64,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Open-set attribution benchmark: rotating unknown sources x shots x layers x classifiers x rejections.

    Features are embedded once per image for all layers (cached on disk); every classifier chooses its
    hyper-parameters and threshold on its training images only, and is scored on held-out images of the
    known sources and all images of the unknown ones.
    """
    from imgorigin.attribution.features import embed_paths_layers
    from imgorigin.attribution.openset import CLASSIFIERS, REJECTIONS

    sources = _class_folders(data_root)
    bindings = _parse_bindings(bind or [])
    if confirm != bool(bindings):
        fail("--confirm and --bind go together: bind at least one source to its model to confirm")
    if strangers := sorted(set(bindings) - set(sources)):
        fail(f"--bind: {', '.join(strangers)} is not a source folder of {data_root}")
    kinds = _choices(classifiers, list(CLASSIFIERS), "--classifiers")
    scores = _choices(rejections, REJECTIONS, "--rejections")
    shot_list = _shots(shots)
    candidates = [s for s in sources if s not in {name.strip() for name in always_known.split(",")}]
    if len(candidates) < n_unknown or len(sources) - n_unknown < 2:
        fail(
            f"{len(sources)} sources ({', '.join(sources)}): need {n_unknown} unknown (not in --always-known) "
            "and at least 2 known in each split"
        )
    split_list = _rotating_splits(candidates, n_unknown, splits or -(-len(candidates) // n_unknown))
    rng = np.random.default_rng(seed)
    source_by_path = {
        str(found[i]): name
        for name, found in sources.items()
        for i in np.sort(rng.choice(len(found), min(len(found), max_per_source), replace=False))
    }
    extractor = _backbone(backbone, device)
    try:
        layer_names = (
            [extractor.default_layer]
            if layers == "default"
            else list(extractor.layers)
            if layers == "all"
            else [extractor.resolve_layer(name.strip()) for name in layers.split(",")]
        )
    except ValueError as exc:
        fail(str(exc))
    embedded = embed_paths_layers(
        extractor,
        list(source_by_path),
        layer_names,
        cache_dir=cache_dir,
        batch_size=batch_size,
        progress=progress_enabled(),
    )
    _warn_skipped(embedded.errors)
    source_of = np.array([source_by_path[path] for path in embedded.paths])
    rows, two_stage_rows = [], []
    setting = (layer_names[0], kinds[0], scores[0])
    for index, unknown in enumerate(split_list):
        if confirm:  # first, so that a model that cannot be loaded stops the run before the sweep
            two_stage_rows += _bench_two_stage(
                embedded.features[setting[0]],
                embedded.paths,
                source_of,
                index,
                unknown,
                setting,
                lambda model: _attributor(model, bindings, alpha, top_k, min_probability, device, cache_dir),
                test_fraction,
                seed,
            )
        rows += _bench_split(
            embedded.features, source_of, index, unknown, shot_list, kinds, scores, test_fraction, seed
        )
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "data_root": str(data_root),
        "backbone": extractor.id,
        "layers": layer_names,
        "splits": split_list,
        "test_fraction": test_fraction,
        "max_per_source": max_per_source,
        "seed": seed,
        "images": {name: int((source_of == name).sum()) for name in sources},
        "errors": [{"path": p, "error": m} for p, m in embedded.errors],
    }
    results: dict[str, Any] = {"config": config, "rows": rows}
    table = _markdown(rows)
    if confirm:
        results["two_stage_rows"] = two_stage_rows
        config["two_stage"] = _two_stage_settings(alpha, top_k, min_probability, bindings)
        table += "\n" + _markdown(two_stage_rows, ("mode", "layer", "classifier", "rejection", "shots"), timed=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(
        f"Backbone {extractor.id}, {len(split_list)} splits of {data_root}; "
        f"metrics in %, mean ± std over splits.\n\n{table}"
    )
    typer.echo(table, err=True)


def _shots(text: str) -> list[int | None]:
    """'1,5,all' -> [1, 5, None] (None: the whole training pool)."""
    try:
        values = [None if item.strip() == "all" else int(item) for item in text.split(",")]
    except ValueError:
        fail(f"--shots: expected comma-separated positive integers or 'all', got {text!r}")
    if any(v is not None and v < 1 for v in values):
        fail(f"--shots: expected positive integers or 'all', got {text!r}")
    return values


def _bench_split(
    features: dict[str, np.ndarray],
    source_of: np.ndarray,
    index: int,
    unknown: list[str],
    shot_list: list[int | None],
    kinds: list[str],
    rejections: list[str],
    test_fraction: float,
    seed: int,
) -> list[dict[str, Any]]:
    """Result rows of one split: known sources split into training pool / test, then every configuration."""
    from imgorigin.attribution.openset import CLASSIFIERS
    from imgorigin.metrics import open_set_summary

    known, pools, test_known, test_unknown = _split(source_of, index, unknown, test_fraction, seed)
    smallest = min(len(pool) for pool in pools)
    rows = []
    for n_shots in shot_list:
        if n_shots is not None and n_shots > smallest:
            typer.echo(f"split {index}: skipping {n_shots} shots (smallest training pool: {smallest})", err=True)
            continue
        train = np.concatenate([pool[:n_shots] for pool in pools])
        typer.echo(
            f"split {index} (unknown: {', '.join(unknown)}): {n_shots or 'all'} shots, {len(train)} training images",
            err=True,
        )
        for layer, x in features.items():
            for kind in kinds:
                for rejection in rejections:
                    model = CLASSIFIERS[kind](rejection=rejection, random_state=seed).fit(x[train], source_of[train])
                    summary = open_set_summary(
                        source_of[test_known],
                        model.predict_closed_set(x[test_known]),
                        model.score_samples(x[test_known]),
                        model.score_samples(x[test_unknown]),
                        model.threshold_,
                    )
                    rows.append(
                        {
                            "split": index,
                            "unknown": unknown,
                            "known": known,
                            "layer": layer,
                            "classifier": kind,
                            "rejection": rejection,
                            "shots": n_shots or "all",
                            "n_train": len(train),
                            "n_test_known": len(test_known),
                            "n_test_unknown": len(test_unknown),
                            "selection": model.selection_,
                            **summary,
                        }
                    )
    return rows


def _split(
    source_of: np.ndarray, index: int, unknown: list[str], test_fraction: float, seed: int
) -> tuple[list[str], list[np.ndarray], np.ndarray, np.ndarray]:
    """Known sources, their shuffled training pools, and the test images of the known and unknown sources."""
    rng = np.random.default_rng([seed, index])
    known = [name for name in dict.fromkeys(source_of.tolist()) if name not in unknown]
    pools, tests = [], []
    for name in known:
        members = rng.permutation(np.flatnonzero(source_of == name))
        n_test = max(1, round(test_fraction * len(members)))
        tests.append(members[:n_test])
        pools.append(members[n_test:])  # shuffled: the first n are the n-shot training set, nested across n
    return known, pools, np.concatenate(tests), np.flatnonzero(np.isin(source_of, unknown))


def _bench_two_stage(
    x: np.ndarray,
    paths: list[str],
    source_of: np.ndarray,
    index: int,
    unknown: list[str],
    setting: tuple[str, str, str],
    make_attributor: Callable[[OpenSetClassifier], TwoStageAttributor],
    test_fraction: float,
    seed: int,
) -> list[dict[str, Any]]:
    """A split's features row and two-stage row for one (layer, classifier, rejection) on the whole pool."""
    from imgorigin.attribution.openset import CLASSIFIERS

    known, pools, test_known, test_unknown = _split(source_of, index, unknown, test_fraction, seed)
    layer, kind, rejection = setting
    train, test = np.concatenate(pools), np.concatenate([test_known, test_unknown])
    model = CLASSIFIERS[kind](rejection=rejection, random_state=seed).fit(x[train], source_of[train])
    attributor = make_attributor(model)
    features, features_seconds = _timed(lambda: _feature_answers(model, x[test]))
    records, seconds = _timed(
        lambda: attributor.attribute(x[test], [paths[i] for i in test], progress=progress_enabled())
    )
    n_known, rows = len(test_known), []
    for mode, answers, spent in (
        ("features", features, features_seconds),
        ("two-stage", _two_stage_answers(records), seconds),
    ):
        summary = _summary(source_of[test_known], answers.part(slice(n_known)), answers.part(slice(n_known, None)))
        rows.append(
            {
                "split": index,
                "unknown": unknown,
                "known": known,
                "mode": mode,
                "layer": layer,
                "classifier": kind,
                "rejection": rejection,
                "shots": "all",
                "n_train": len(train),
                "n_test_known": n_known,
                "n_test_unknown": len(test_unknown),
                **summary,
                "seconds_per_image": spent / len(test),
            }
        )
    rows[-1]["rules"] = dict(sorted(Counter(r["rule"] for r in records).items()))
    typer.echo(
        f"split {index} (unknown: {', '.join(unknown)}): two-stage accuracy "
        f"{rows[-1]['closed_set_accuracy']:.3f}, AUROC {rows[-1]['auroc']:.3f}, "
        f"{rows[-1]['seconds_per_image']:.3g} s/image",
        err=True,
    )
    return rows


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the attribution commands to the CLI."""
    app.command()(fit)
    app.command()(attribute)
    app.command()(evaluate)
    bench_app.command("attribute")(bench_attribute)
