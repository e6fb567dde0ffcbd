"""``imgorigin evaluate``: open-set metrics of a classifier on held-out known images and unknown sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imgorigin.cli.attribute import (
    AlphaOpt,
    BackboneOverrideOpt,
    BatchOpt,
    CacheOpt,
    ClassifierDirArg,
    ConfirmOpt,
    MinProbabilityOpt,
    ThresholdOpt,
    TopKOpt,
    load_attributor,
    load_two_stage,
    warn_skipped,
)
from imgorigin.cli.common import DeviceOpt, progress_enabled
from imgorigin.cli.options import DetailAlphaOpt
from imgorigin.verification.detail import DEFAULT_ALPHA as DEFAULT_DETAIL_ALPHA


def evaluate(
    classifier_dir: ClassifierDirArg,
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
    detail_alpha: DetailAlphaOpt = DEFAULT_DETAIL_ALPHA,
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
    from imgorigin.attribution.attributor import class_folders
    from imgorigin.attribution.evaluation import evaluate as run_evaluation
    from imgorigin.attribution.evaluation import unknown_sources
    from imgorigin.report import write_open_set_plots

    attributor = load_attributor(classifier_dir, threshold, backbone, batch_size, cache_dir, device)
    two_stage = (
        load_two_stage(classifier_dir, attributor, alpha, top_k, min_probability, device, cache_dir, detail_alpha)
        if confirm
        else None
    )
    result = run_evaluation(
        attributor,
        class_folders(known),
        unknown_sources([*unknown, *(more_unknown or [])]),
        two_stage=two_stage,
        classifier_path=classifier_dir,
        progress=progress_enabled(),
    )
    metrics = result.metrics
    warn_skipped((error["path"], error["error"]) for error in metrics["errors"])
    text = json.dumps(metrics, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
    if report is not None:
        write_open_set_plots(report, result.known.scores, result.unknown.scores, metrics)
    typer.echo(
        f"{metrics['mode']}: accuracy {metrics['closed_set_accuracy']:.3f}, AUROC {metrics['auroc']:.3f}, "
        f"OSCR {metrics['oscr']:.3f}, TPR@5%FPR {metrics['tpr_at_5_fpr']:.3f} on {metrics['n_images']['known']} "
        f"known and {metrics['n_images']['unknown']} unknown images, "
        f"{metrics['images_per_second'][metrics['mode']]:.3g} images/s",
        err=True,
    )


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``evaluate`` to the CLI."""
    app.command()(evaluate)
