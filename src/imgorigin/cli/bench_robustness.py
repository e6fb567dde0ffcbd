"""``imgorigin bench robustness``: verification under JPEG, WebP, crops, blur, noise and resizing
(imgorigin.benchmarks.robustness)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgorigin.cli.common import DeviceOpt, fail
from imgorigin.cli.options import open_unit_interval


def _names(text: str, what: str) -> list[str]:
    from imgorigin import zoo

    names = [item.strip() for item in text.split(",") if item.strip()]
    wrong = [n for n in names if n not in zoo.list_models()]
    if wrong:
        fail(f"{what}: unknown zoo model(s) {', '.join(wrong)} (known: {', '.join(zoo.list_models())})")
    return names


def bench_robustness(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for results.json, results.md, one plot per model, the files.")
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
    device: DeviceOpt = "auto",
) -> None:
    """Verification under perturbation: AUROC, acceptance and inconclusive rates per perturbation and strength."""
    from imgorigin.benchmarks.robustness import parse_grid, run
    from imgorigin.runtime import resolve_device

    try:
        points = parse_grid(grid)
    except ValueError as err:
        fail(f"--grid: {err}")
    run(
        _names(models, "--models"),
        out,
        grid=points,
        others=_names(others, "--others"),
        n_members=n_members,
        n_real=n_real,
        n_other=n_other,
        n_cal=n_cal,
        matched=not no_matched,
        alpha=alpha,
        device=resolve_device(device),
        log=lambda m: typer.echo(m, err=True),
    )
    typer.echo((out / "results.md").read_text())


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``bench robustness`` to the CLI."""
    bench_app.command("robustness")(bench_robustness)
