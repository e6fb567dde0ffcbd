"""``imgorigin bench attribute``: the open-set attribution benchmark (imgorigin.benchmarks.attribution)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgorigin.cli.attribute import AlphaOpt, BatchOpt, CacheOpt, MinProbabilityOpt, TopKOpt
from imgorigin.cli.bind import BIND_HELP
from imgorigin.cli.common import DeviceOpt, fail, progress_enabled


def choices(text: str, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    """A comma-separated option as a list, every item checked against the allowed values."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    wrong = [item for item in items if item not in allowed]
    if wrong or not items:
        fail(f"{what}: {', '.join(wrong) or 'nothing given'} not among {', '.join(allowed)}")
    return items


def shots_list(text: str) -> list[int | None]:
    """'1,5,all' -> [1, 5, None] (None: the whole training pool)."""
    try:
        values = [None if item.strip() == "all" else int(item) for item in text.split(",")]
    except ValueError:
        fail(f"--shots: expected comma-separated positive integers or 'all', got {text!r}")
    if any(v is not None and v < 1 for v in values):
        fail(f"--shots: expected positive integers or 'all', got {text!r}")
    return values


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
        str,
        typer.Option(
            help="Layers to sweep: comma-separated names, 'default' or 'all'. A fused layer joins parts with '+', "
            "each L2-normalised (e.g. 3.mean+6); BACKBONE@LAYER is a part from another backbone (6+spectrum@grid)."
        ),
    ] = "default",
    classifiers: Annotated[str, typer.Option(help="Comma-separated classifiers: linear, knn.")] = "linear,knn",
    rejections: Annotated[
        str,
        typer.Option(
            help="Comma-separated rejection scores: msp, maxlogit, energy, mahalanobis, knn, "
            "rel-mahalanobis, class-knn."
        ),
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
    from imgorigin.attribution.openset import CLASSIFIERS, REJECTIONS
    from imgorigin.benchmarks.attribution import run
    from imgorigin.twostage import Bindings

    bindings = Bindings.parse(bind or [])
    if confirm != bool(bindings):
        fail("--confirm and --bind go together: bind at least one source to its model to confirm")
    run(
        data_root,
        out,
        backbone=backbone,
        layers=layers if layers in ("default", "all") else [name.strip() for name in layers.split(",")],
        classifiers=choices(classifiers, list(CLASSIFIERS), "--classifiers"),
        rejections=choices(rejections, REJECTIONS, "--rejections"),
        shots=shots_list(shots),
        n_unknown=n_unknown,
        splits=splits,
        always_known=[name.strip() for name in always_known.split(",")],
        test_fraction=test_fraction,
        max_per_source=max_per_source,
        seed=seed,
        bindings=bindings,
        top_k=top_k,
        min_probability=min_probability,
        alpha=alpha,
        batch_size=batch_size,
        cache_dir=cache_dir,
        device=device,
        progress=progress_enabled(),
        log=lambda line: typer.echo(line, err=True),
    )


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``bench attribute`` to the CLI."""
    bench_app.command("attribute")(bench_attribute)
