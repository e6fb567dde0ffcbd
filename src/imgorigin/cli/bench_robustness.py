"""``imgorigin bench robustness``: verification (imgorigin.benchmarks.robustness) and open-set attribution
(imgorigin.benchmarks.robustness_attribution) under JPEG, WebP, crops, blur, noise and resizing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgorigin.cli.attribute import BatchOpt, CacheOpt
from imgorigin.cli.common import DeviceOpt, fail
from imgorigin.cli.options import open_unit_interval

METHODS = ("verification", "attribution")


def _names(text: str, what: str) -> list[str]:
    from imgorigin import zoo

    names = [item.strip() for item in text.split(",") if item.strip()]
    wrong = [n for n in names if n not in zoo.list_models()]
    if wrong:
        fail(f"{what}: unknown zoo model(s) {', '.join(wrong)} (known: {', '.join(zoo.list_models())})")
    return names


def _choice(text: str, allowed: tuple[str, ...] | list[str], what: str) -> str:
    if text not in allowed:
        fail(f"{what}: {text!r} not among {', '.join(allowed)}")
    return text


def bench_robustness(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for results.json, results.md, one plot per model (attribution: results.png), the files.",
        ),
    ] = Path("runs/bench-robustness"),
    models: Annotated[str, typer.Option(help="Comma-separated zoo models to verify against.")] = "dcgan,vae",
    others: Annotated[
        str,
        typer.Option(help="Comma-separated zoo models whose samples are non-members (the model itself is left out)."),
    ] = "dcgan,vae,wgangp,ldm",
    grid: Annotated[
        str,
        typer.Option(
            help="Comma-separated perturbations KIND:STRENGTH (none, jpeg:Q, webp:Q, crop:F, blur:SIGMA, noise:STD, "
            "resize:F (down then back up, PNG), scaled:F (file left at F x the size)); 'default' = the issue's grid."
        ),
    ] = "default",
    n_members: Annotated[int, typer.Option(min=2, help="Fresh samples of the model per grid point.")] = 30,
    n_real: Annotated[int, typer.Option(min=1, max=200, help="Real Fashion-MNIST test images per grid point.")] = 30,
    n_other: Annotated[int, typer.Option(min=0, help="Samples of each other model per grid point.")] = 10,
    n_cal: Annotated[int, typer.Option(min=2, help="Own processed samples per matched (JPEG/WebP) calibration.")] = 30,
    no_matched: Annotated[
        bool, typer.Option("--no-matched", help="Skip the calibrations on processed samples.")
    ] = False,
    alpha: Annotated[float, typer.Option(callback=open_unit_interval, help="Level of the conformal decision.")] = 0.05,
    methods: Annotated[
        str,
        typer.Option(
            help="Comma-separated: verification (the verifier of each --models), attribution (the open-set "
            "classifier: fitted once on pristine real + --known images, tested on fresh known images and --unknown "
            "sources at each grid point). With both, the attribution results go to OUT/attribution."
        ),
    ] = "verification",
    known: Annotated[
        str, typer.Option(help="Attribution: comma-separated zoo models that are known classes (with real images).")
    ] = "dcgan,wgangp,vae,ldm",
    unknown: Annotated[
        str, typer.Option(help="Attribution: comma-separated zoo models held out as unknown (never fitted).")
    ] = "ddpm,dcgan-twin",
    n_train: Annotated[
        int, typer.Option(min=2, help="Attribution: pristine training images per known class (real included).")
    ] = 100,
    n_test: Annotated[
        int, typer.Option(min=1, help="Attribution: fresh test images per known class and per unknown source.")
    ] = 40,
    backbone: Annotated[
        str, typer.Option(help="Attribution: feature extractor (see `imgorigin backbones`).")
    ] = "efficientnet-lite0",
    layer: Annotated[
        str | None, typer.Option(help="Attribution: backbone layer (name, alias or index); default: the backbone's.")
    ] = None,
    classifier: Annotated[str, typer.Option(help="Attribution: classifier (linear, knn).")] = "linear",
    rejection: Annotated[
        str,
        typer.Option(
            help="Attribution: rejection score (msp, maxlogit, energy, mahalanobis, knn, rel-mahalanobis, class-knn)."
        ),
    ] = "msp",
    seed: Annotated[int, typer.Option(help="Attribution: seed of the classifier's validation split and folds.")] = 0,
    confirm: Annotated[
        bool,
        typer.Option(
            "--confirm",
            help="Attribution: two-stage answers (every --known generator bound to its zoo model and shipped "
            "calibration, verified at --alpha); costs inversions, so use a small --n-test and --grid.",
        ),
    ] = False,
    batch_size: BatchOpt = 64,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Verification and open-set attribution under perturbation, per perturbation and strength.

    Verification (the default method): AUROC, acceptance and inconclusive rates. Attribution: closed-set
    accuracy, AUROC known-vs-unknown and OSCR of a classifier fitted on pristine images (features cached).
    """
    from imgorigin.attribution.openset import CLASSIFIERS, REJECTIONS
    from imgorigin.benchmarks.robustness import parse_grid, run
    from imgorigin.runtime import resolve_device

    chosen = [item.strip() for item in methods.split(",") if item.strip()]
    if not chosen or (wrong := [m for m in chosen if m not in METHODS]):
        fail(f"--methods: {', '.join(wrong) if chosen else 'nothing given'} not among {', '.join(METHODS)}")
    try:
        points = parse_grid(grid)
    except ValueError as err:
        fail(f"--grid: {err}")
    verify_models, verify_others = _names(models, "--models"), _names(others, "--others")

    def log(message: str) -> None:
        typer.echo(message, err=True)

    if "attribution" in chosen:  # first: it is the cheap one, and a bad backbone or layer stops the run early
        from imgorigin.benchmarks import robustness_attribution

        known_models, unknown_models = _names(known, "--known"), _names(unknown, "--unknown")
        robustness_attribution.check_sources(known_models, unknown_models)
        target = out / "attribution" if "verification" in chosen else out
        robustness_attribution.run(
            target,
            grid=points,
            known=known_models,
            unknown=unknown_models,
            n_train=n_train,
            n_test=n_test,
            backbone=backbone,
            layer=layer,
            classifier=_choice(classifier, list(CLASSIFIERS), "--classifier"),
            rejection=_choice(rejection, REJECTIONS, "--rejection"),
            seed=seed,
            batch_size=batch_size,
            cache_dir=cache_dir,
            device=resolve_device(device),
            confirm=confirm,
            alpha=alpha,
            log=log,
        )
        typer.echo((target / "results.md").read_text())
    if "verification" in chosen:
        run(
            verify_models,
            out,
            grid=points,
            others=verify_others,
            n_members=n_members,
            n_real=n_real,
            n_other=n_other,
            n_cal=n_cal,
            matched=not no_matched,
            alpha=alpha,
            device=resolve_device(device),
            log=log,
        )
        typer.echo((out / "results.md").read_text())


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``bench robustness`` to the CLI."""
    bench_app.command("robustness")(bench_robustness)
