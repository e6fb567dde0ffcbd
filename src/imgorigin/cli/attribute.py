"""``imgorigin fit`` and ``imgorigin attribute``: open-set attribution from features, over the library's Attributor.

Also the options and loaders that ``evaluate`` and ``bench attribute`` share with them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imgorigin.cli.bind import BIND_HELP
from imgorigin.cli.common import DeviceOpt, RestartOpt, echo, fail, progress_enabled
from imgorigin.cli.engine import EngineConfig, engine_options, expand_manifests
from imgorigin.cli.options import DetailAlphaOpt, detail_level
from imgorigin.runtime import default_cache_dir
from imgorigin.verification.detail import DEFAULT_ALPHA as DEFAULT_DETAIL_ALPHA

if TYPE_CHECKING:
    from imgorigin.attribution.attributor import Attributor
    from imgorigin.distributed.engine import Job
    from imgorigin.twostage import TwoStageAttributor

# Spelled out rather than imported from imgorigin.attribution.openset, which would load scikit-learn for every command.
Classifier = Enum("Classifier", {"linear": "linear", "knn": "knn"}, type=str)
REJECTION_NAMES = ("msp", "maxlogit", "energy", "mahalanobis", "knn", "rel-mahalanobis", "class-knn")
Rejection = Enum("Rejection", {name: name for name in REJECTION_NAMES}, type=str)

CacheOpt = Annotated[
    Path | None, typer.Option(help="Feature cache folder (default $IMGORIGIN_CACHE or ~/.cache/imgorigin).")
]
BatchOpt = Annotated[int, typer.Option(min=1, help="Images per forward pass of the backbone.")]
ClassifierDirArg = Annotated[Path, typer.Argument(metavar="CLF", help="Classifier folder written by `imgorigin fit`.")]
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


def load_attributor(
    classifier_dir: Path,
    threshold: float | None,
    backbone: str | None,
    batch_size: int,
    cache_dir: Path | None,
    device: str,
) -> Attributor:
    """A saved attributor, its backbone loaded (optionally from elsewhere) and its threshold optionally replaced."""
    from imgorigin.attribution.attributor import Attributor

    attributor = Attributor.load(
        classifier_dir, backbone=backbone, batch_size=batch_size, cache_dir=cache_dir, device=device
    )
    if threshold is not None:
        attributor.classifier.threshold_ = threshold
    return attributor


def load_two_stage(
    classifier_dir: Path,
    attributor: Attributor,
    alpha: float,
    top_k: int | None,
    min_probability: float,
    device: str,
    cache_dir: Path | None,
    detail_alpha: float = DEFAULT_DETAIL_ALPHA,
) -> TwoStageAttributor:
    """The attributor with the bindings stored beside it, every bound model loaded now, not halfway through a run."""
    from imgorigin.twostage import Bindings, TwoStageAttributor

    bindings = Bindings.load(classifier_dir)
    if not bindings:
        fail(
            f"--confirm: no class of {classifier_dir} is bound to a model; bind some with `imgorigin bind "
            f"{classifier_dir} LABEL=MODEL[@CAL]` or `imgorigin fit --bind`"
        )
    two_stage = TwoStageAttributor(
        attributor,
        bindings,
        alpha=alpha,
        top_k=top_k,
        min_probability=min_probability,
        device=device,
        cache_dir=cache_dir or default_cache_dir(),
        detail_alpha=detail_level(detail_alpha),
    )
    two_stage.load_verifiers()
    return two_stage


def build_source(
    classifier_dir: str,
    threshold: float | None,
    backbone: str | None,
    batch_size: int,
    cache_dir: str | None,
    device: str,
    two_stage: dict | None,
) -> Attributor | TwoStageAttributor:
    """What ``attribute`` decides with (the attributor, or with ``two_stage`` settings the two-stage one), built
    the way the command builds it: the Ray engine's workers call this."""
    path = Path(classifier_dir)
    cache = Path(cache_dir) if cache_dir is not None else None
    attributor = load_attributor(path, threshold, backbone, batch_size, cache, device)
    if two_stage is None:
        return attributor
    return load_two_stage(path, attributor, device=device, cache_dir=cache, **two_stage)


def source_job(source: Attributor | TwoStageAttributor, build: functools.partial) -> Job:
    """The Ray engine's job for ``attribute``: workers call ``build`` (a partial of :func:`build_source`)."""
    from imgorigin.distributed.engine import Job

    return Job(build, "attribute_paths", source.identity())


def warn_skipped(errors: Iterable[tuple[str, str]]) -> None:
    """One stderr line per (path, message) of an image that could not be used."""
    for path, message in errors:
        typer.echo(f"warning: skipped {path}: {message}", err=True)


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
            help="Score that decides 'unknown': msp (max softmax probability), maxlogit, energy, mahalanobis, "
            "knn (nearest training image), rel-mahalanobis (class Mahalanobis minus a background one), class-knn "
            "(k-NN distance normalised per class)."
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
    from imgorigin.attribution.attributor import Attributor
    from imgorigin.twostage import Bindings

    bindings = Bindings.parse(bind or [])  # fail on a malformed --bind before any fitting is done
    attributor = Attributor.fit(
        train_dir,
        backbone=backbone,
        layer=layer,
        classifier=classifier.value,
        rejection=rejection.value,
        accept_rate=accept_rate,
        val_unknown=val_unknown,
        seed=seed,
        batch_size=batch_size,
        cache_dir=cache_dir,
        device=device,
        progress=progress_enabled(),
    )
    model, spec = attributor.classifier, attributor.spec
    warn_skipped(model.training_.errors)
    attributor.save(out)
    bound = Bindings.load(out).merged(bindings) if bindings else Bindings()
    if bound:
        bound.save(out)
    counts = model.training_.train_counts
    typer.echo(
        f"fitted {classifier.value} ({rejection.value}) on {sum(counts.values())} images of {len(counts)} classes "
        f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}) with {spec.id} layer "
        f"{spec.layer}; {model.selection_}; threshold {model.threshold_:.4g} "
        f"({model.threshold_source_}); bound: {', '.join(sorted(bound)) or 'none'} -> {out}",
        err=True,
    )


def attribute(
    classifier_dir: ClassifierDirArg,
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Images, folders (searched recursively) or @FILE: a manifest of paths (text, .csv or .parquet)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="JSON-lines file (default: stdout). An existing file of the same run (classifier, threshold, "
            "two-stage settings) is resumed: answered images are skipped; another run's file is refused.",
        ),
    ] = None,
    restart: RestartOpt = False,
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
    *,
    engine: EngineConfig,
) -> None:
    """Attribute each image to a known source or 'unknown'; one JSON record per image.

    Record: path, sha256, label ('unknown' when rejected), known, confidence (probability of the most
    likely known source), scores (probability per known source), best_known, rejection score and
    threshold. With --confirm: label (a class, 'unknown' or 'inconclusive'), known, rule (verification,
    features, rejected or conflict), known_score, reasons, features (the stage-1 evidence), candidates and
    verification (p-values per verified class). Exit status 1 when some images could not be read (their
    records hold "error").
    """
    from imgorigin.batch import run_batch
    from imgorigin.distributed.jobs import path_text

    attributor = load_attributor(classifier_dir, threshold, backbone, batch_size, cache_dir, device)
    source = (
        load_two_stage(classifier_dir, attributor, alpha, top_k, min_probability, device, cache_dir, detail_alpha)
        if confirm
        else attributor
    )
    settings = {"alpha": alpha, "top_k": top_k, "min_probability": min_probability, "detail_alpha": detail_alpha}
    build = functools.partial(
        build_source,
        path_text(classifier_dir),
        threshold,
        backbone,
        batch_size,
        path_text(cache_dir),
        device,
        settings if confirm else None,
    )
    records = engine.decide(
        lambda files: source.attribute_paths(files, progress=progress_enabled()),
        lambda: source_job(source, build),
        progress=progress_enabled(),
    )

    def decide(files: list[Path]) -> Iterator[dict]:
        for record in records(files):
            if "error" in record:
                warn_skipped([(record["path"], record["error"])])
            yield record

    summary = run_batch(
        expand_manifests(paths), decide, output=output, identity=source.identity(), restart=restart, log=echo
    )
    if engine.finish(output) is not None:
        echo(f"parquet: {engine.parquet}")
    echo(summary.line())
    raise typer.Exit(summary.exit_code)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``fit`` and ``attribute`` to the CLI."""
    app.command()(fit)
    app.command()(engine_options(attribute))
