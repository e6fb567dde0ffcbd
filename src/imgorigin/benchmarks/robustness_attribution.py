"""Open-set attribution of images as they arrive in the wild: JPEG, WebP, crops, blur, noise and resizing.

The classifier is fitted once, on pristine images: ``n_train`` real Fashion-MNIST test images and ``n_train``
samples (seed ``TRAIN_SEED``) of each known zoo model, written as 8-bit PNG files under ``out/train/<class>/``
(:meth:`Attributor.fit`, features from a frozen backbone). The test images are fresh: ``n_test`` other real
test images, ``n_test`` samples (seed ``TEST_SEED``) of each known model, and ``n_test`` samples of each zoo model
held out as unknown (never fitted). Each test set goes through each perturbation of the verification robustness
grid (:mod:`imgorigin.benchmarks.robustness`: the same perturbations, written as real files in the same way)
and the files are measured by :func:`imgorigin.attribution.evaluation.evaluate`, as ``imgorigin evaluate`` does:
closed-set accuracy, AUROC known-vs-unknown, OSCR, TPR at 5 % FPR and the operating point's rates per grid point.

Features are cached by image content (``cache_dir``), so a rerun embeds nothing it has embedded before. The
classifier never sees processed images: the table says what processing it was not trained on does to it.

With ``confirm``, the answers are two-stage attribution's: every known generator is bound to its model (the zoo
model and its shipped calibration unless ``bindings`` says otherwise) and verification confirms the features'
short-list, with the verifier's own rules for processed files (``processing_not_calibrated``,
``smoother_than_model``: such a candidate is ``inconclusive``, and so is the answer when no other accepts).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgorigin.attribution.attributor import Attributor
from imgorigin.attribution.evaluation import evaluate
from imgorigin.attribution.features import DEFAULT_BACKBONE, create_backbone
from imgorigin.attribution.openset import CLASSIFIERS, REJECTIONS
from imgorigin.attribution.spec import BackboneSpec
from imgorigin.benchmarks.robustness import (
    GRID,
    Perturbation,
    hash_seed,
    loader_warnings_off,
    machine,
    to_codes,
    write_set,
)
from imgorigin.errors import UsageError
from imgorigin.labels import UNKNOWN
from imgorigin.runtime import default_cache_dir, resolve_device
from imgorigin.twostage import Binding, TwoStageAttributor

#: Seeds of the zoo samples the classifier is fitted on and of the fresh test samples (not verification's).
TRAIN_SEED = 5_000
TEST_SEED = 6_000
#: The class of the real images.
REAL = "real"
#: Known generators (with real) and generators held out as unknown: ddpm differs from every known source,
#: dcgan-twin (dcgan's recipe with another seed) is the hard case.
DEFAULT_KNOWN = ("dcgan", "wgangp", "vae", "ldm")
DEFAULT_UNKNOWN = ("ddpm", "dcgan-twin")
#: The metrics of one grid point that the table, the log and the plot show (evaluation's names).
METRICS = ("closed_set_accuracy", "auroc", "oscr", "tpr_at_5_fpr", "known_accepted", "unknown_rejected")


def folder_name(perturbation: Perturbation) -> str:
    """The folder of a grid point's files ('jpeg:75' -> 'jpeg-75')."""
    return perturbation.name.replace(":", "-")


def check_sources(known: Sequence[str], unknown: Sequence[str]) -> None:
    """At least one known generator and one unknown source, none of them both, none named 'real'."""
    if not known:
        raise UsageError("need at least one known generator (real images are always known)")
    if not unknown:
        raise UsageError("need at least one unknown source")
    if both := sorted(set(known) & set(unknown)):
        raise UsageError(f"{', '.join(both)}: a source is either known or unknown, not both")
    if REAL in (*known, *unknown) or UNKNOWN in (*known, *unknown):
        raise UsageError(f"{REAL!r} and {UNKNOWN!r} are not generator names")


def run(
    out: str | os.PathLike[str],
    *,
    grid: Sequence[Perturbation] = GRID,
    known: Sequence[str] = DEFAULT_KNOWN,
    unknown: Sequence[str] = DEFAULT_UNKNOWN,
    n_train: int = 100,
    n_test: int = 40,
    backbone: str = DEFAULT_BACKBONE,
    layer: str | int | None = None,
    classifier: str = "linear",
    rejection: str = "msp",
    accept_rate: float = 0.95,
    seed: int = 0,
    batch_size: int = 64,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = "cpu",
    sample: Callable[[str, int, int], torch.Tensor] | None = None,
    real_images: torch.Tensor | None = None,
    confirm: bool = False,
    bindings: Mapping[str, Binding] | None = None,
    alpha: float = 0.05,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fit once on pristine images, evaluate on each grid point; writes ``out/results.json``, ``out/results.md``
    and ``out/results.png`` (metrics against strength, one panel per kind of processing).

    ``sample(name, n, seed)`` (images ``[n, 1, H, W]`` in [0, 1]) defaults to :func:`imgorigin.zoo.sample`;
    ``real_images`` to the Fashion-MNIST test split (the shipped 200-image subset when the split is not
    installed): its first ``n_train`` images are trained on, the next ``n_test`` tested. ``layer`` None: the
    backbone's default layer. ``cache_dir`` None: the default feature cache (and, with ``confirm``, score cache).
    ``bindings`` (with ``confirm``): label → model binding, default ``zoo:NAME`` for every known generator."""
    known, unknown = list(known), list(unknown)
    check_sources(known, unknown)
    if n_train < 2 or n_test < 1:
        raise UsageError(f"need n_train >= 2 and n_test >= 1, got {n_train} and {n_test}")
    if classifier not in CLASSIFIERS:
        raise UsageError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {classifier!r}")
    if rejection not in REJECTIONS:
        raise UsageError(f"rejection must be one of {', '.join(REJECTIONS)}, got {rejection!r}")
    if not grid:
        raise UsageError("the grid has no perturbation")
    # a bad backbone or layer stops the run before anything is sampled or written
    device = resolve_device(device)
    layer_name = BackboneSpec.of(create_backbone(backbone, device=device), layer).layer
    if sample is None:
        from imgorigin import zoo

        def sample(name: str, n: int, seed: int) -> torch.Tensor:
            return zoo.sample(name, n, seed=seed, device=device).cpu()

    if real_images is None:
        from imgorigin.zoo import data

        real_images = data.test_images() if data.is_available() else data.subset_images()
    if len(real_images) < n_train + n_test:
        raise UsageError(f"{len(real_images)} real images: fewer than n_train + n_test = {n_train + n_test}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with loader_warnings_off():  # one "resized" warning per file of the scaled point would bury the log
        train_codes = {REAL: to_codes(real_images[:n_train])}
        train_codes |= {name: to_codes(sample(name, n_train, TRAIN_SEED)) for name in known}
        test_codes = {REAL: to_codes(real_images[n_train : n_train + n_test])}
        test_codes |= {name: to_codes(sample(name, n_test, TEST_SEED)) for name in [*known, *unknown]}
        n_train_all, n_test_all = sum(map(len, train_codes.values())), sum(map(len, test_codes.values()))
        log(f"sampled {n_train_all} training and {n_test_all} test images")
        pristine = Perturbation("none")
        for name, codes in train_codes.items():
            write_set(codes, pristine, out / "train" / name, seed=hash_seed(name))
        fit_start = time.perf_counter()
        attributor = Attributor.fit(
            out / "train",
            backbone=backbone,
            layer=layer_name,
            classifier=classifier,
            rejection=rejection,
            accept_rate=accept_rate,
            seed=seed,
            batch_size=batch_size,
            cache_dir=cache_dir,
            device=device,
        )
        fit_seconds = round(time.perf_counter() - fit_start, 1)
        log(f"fitted {classifier} ({rejection}) on {backbone} layer {layer_name} in {fit_seconds} s")
        two_stage = None
        if confirm:
            bound = bindings if bindings is not None else {name: Binding(name, f"zoo:{name}") for name in known}
            two_stage = TwoStageAttributor(
                attributor, bound, alpha=alpha, device=device, cache_dir=cache_dir or default_cache_dir()
            )
            two_stage.load_verifiers()
        rows = [
            _point(attributor, perturbation, test_codes, known, unknown, out, log, two_stage) for perturbation in grid
        ]
    results: dict[str, Any] = {
        "settings": {
            "grid": [p.name for p in grid],
            "known": [REAL, *known],
            "unknown": unknown,
            "n_train": n_train,
            "n_test": n_test,
            "backbone": attributor.spec.id,
            "backbone_name": backbone,
            "layer": attributor.spec.layer,
            "classifier": classifier,
            "rejection": rejection,
            "accept_rate": accept_rate,
            "threshold": attributor.classifier.threshold_,
            "seed": seed,
            "train_seed": TRAIN_SEED,
            "test_seed": TEST_SEED,
            "training_errors": len(attributor.classifier.training_.errors),
            "mode": "two-stage" if confirm else "features",
            "alpha": alpha if confirm else None,
        },
        "rows": rows,
        "fit_seconds": fit_seconds,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "machine": machine(),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(markdown(results))
    plot(rows, out / "results.png", title=f"{backbone} {attributor.spec.layer}, {classifier} + {rejection}")
    return results


def _point(
    attributor: Attributor,
    perturbation: Perturbation,
    test_codes: dict[str, np.ndarray],
    known: Sequence[str],
    unknown: Sequence[str],
    out: Path,
    log: Callable[[str], None],
    two_stage: TwoStageAttributor | None = None,
) -> dict[str, Any]:
    """One grid point: the test sets written processed, evaluated as ``imgorigin evaluate`` (``--confirm``
    with ``two_stage``) would."""
    point_start = time.perf_counter()
    folder = out / "images" / folder_name(perturbation)
    known_paths = {
        name: write_set(test_codes[name], perturbation, folder / "known" / name, seed=hash_seed(name))
        for name in (REAL, *known)
    }
    unknown_paths = {
        name: write_set(test_codes[name], perturbation, folder / "unknown" / name, seed=hash_seed(name))
        for name in unknown
    }
    metrics = evaluate(attributor, known_paths, unknown_paths, two_stage=two_stage).metrics
    row: dict[str, Any] = {"perturbation": perturbation.kind, "strength": perturbation.strength}
    row["name"] = perturbation.name
    row |= {key: metrics[key] for key in METRICS}
    row["per_class_accuracy"] = {label: c["closed_set_accuracy"] for label, c in metrics["per_class"].items()}
    row["per_unknown_source"] = metrics["per_unknown_source"]
    row["known_most_often_called"] = _most_often_called(metrics["confusion_matrix"], list(row["per_class_accuracy"]))
    row["n_images"] = metrics["n_images"]
    row["errors"] = len(metrics["errors"])
    if two_stage is not None:
        row["verifications"] = metrics["two_stage"]["verifications"]
        row["rules"] = metrics["two_stage"]["rules"]
    row["seconds"] = round(time.perf_counter() - point_start, 1)
    log(
        f"{perturbation.name}: accuracy {row['closed_set_accuracy']:.3f}, AUROC {row['auroc']:.3f}, "
        f"OSCR {row['oscr']:.3f}, known accepted {row['known_accepted']:.0%}, "
        f"unknown rejected {row['unknown_rejected']:.0%} ({row['seconds']} s)"
    )
    return row


def _most_often_called(matrix: dict[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """The label the known test images are given most often (from evaluation's open-set confusion matrix), and
    the fraction of them given it: a perturbation that drives every image to one class shows as 100 %."""
    labels, counts = matrix["labels"], np.asarray(matrix["rows_true_columns_predicted"])
    called = counts[[labels.index(c) for c in classes]].sum(axis=0)
    top = int(called.argmax())
    return {"label": labels[top], "fraction": float(called[top] / called.sum())}


def _pct(value: float) -> str:
    return "–" if value != value else f"{100 * value:.1f}%"


def markdown(results: dict[str, Any]) -> str:
    """results.md: the settings and one table line per grid point."""
    s = results["settings"]
    unknown = s["unknown"]
    confirm = s["mode"] == "two-stage"
    lines = [
        "# Open-set attribution under perturbation",
        "",
        f"Backbone `{s['backbone_name']}` (layer `{s['layer']}`), classifier `{s['classifier']}`, rejection "
        f"`{s['rejection']}` (threshold accepts {s['accept_rate']:.0%} of known training images), fitted once on "
        f"pristine PNGs: {s['n_train']} images of each known class ({', '.join(s['known'])}). Tested on "
        f"{s['n_test']} fresh images of each known class and of each unknown source ({', '.join(unknown)}), "
        f"processed as each row says. Wall time {results['wall_seconds']:.0f} s (fit {results['fit_seconds']:.0f} s) "
        f"on {results['machine']['cpu_cores']} CPU cores."
        + (
            f" Two-stage (`--confirm`): every known generator bound to its model, verified at α = {s['alpha']}."
            if s["mode"] == "two-stage"
            else ""
        ),
        "",
        "| perturbation | closed-set accuracy | AUROC | OSCR | TPR@5%FPR | known accepted | unknown rejected "
        f"| rejected: {' / '.join(unknown)} | known images mostly called |" + (" verifications |" if confirm else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if confirm else ""),
    ]
    for row in results["rows"]:
        per_source = " / ".join(_pct(row["per_unknown_source"][name]["rejected"]) for name in unknown)
        called = row["known_most_often_called"]
        lines.append(
            f"| {row['name']} | {_pct(row['closed_set_accuracy'])} | {row['auroc']:.3f} | {row['oscr']:.3f} "
            f"| {_pct(row['tpr_at_5_fpr'])} | {_pct(row['known_accepted'])} | {_pct(row['unknown_rejected'])} "
            f"| {per_source} | {called['label']} ({_pct(called['fraction'])}) |"
            + (f" {row['verifications']} |" if confirm else "")
        )
    lines.append("")
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """Accuracy, AUROC, OSCR and the operating point's rates against strength, one panel per kind of processing
    (the pristine values as faint horizontal lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in dict.fromkeys(r["perturbation"] for r in rows) if k != "none"]
    if not kinds:
        return
    pristine = next((r for r in rows if r["perturbation"] == "none"), None)
    series = (
        ("closed-set accuracy", "closed_set_accuracy", "tab:blue", "-"),
        ("AUROC", "auroc", "k", "-"),
        ("OSCR", "oscr", "tab:purple", "-"),
        ("known accepted", "known_accepted", "tab:green", "--"),
        ("unknown rejected", "unknown_rejected", "tab:red", "--"),
    )
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.6 * len(kinds), 2.8), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        chosen = [r for r in rows if r["perturbation"] == kind]
        strengths = [r["strength"] for r in chosen]
        for label, key, colour, style in series:
            ax.plot(strengths, [r[key] for r in chosen], style, color=colour, marker="o", label=label)
            if pristine is not None:
                ax.axhline(pristine[key], color=colour, lw=0.5, alpha=0.4)
        ax.set_title(kind)
        ax.set_xlabel(
            {"jpeg": "quality", "webp": "quality", "crop": "kept fraction", "blur": "σ (px)"}.get(kind, "strength")
        )
        ax.set_ylim(-0.05, 1.05)
    if title:
        fig.suptitle(title, fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
