"""``imgorigin zoo ...``: the shipped generator zoo (list, sample, train, calibrate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgorigin.cli.common import DeviceOpt, fail, progress_enabled
from imgorigin.runtime import resolve_device

zoo_app = typer.Typer(help="The shipped zoo of small generators trained on Fashion-MNIST.", no_args_is_help=True)


def _check(name: str) -> None:
    from imgorigin import zoo

    if name not in zoo.list_models():
        fail(f"unknown zoo model {name!r}; choose one of {', '.join(zoo.list_models())}")


@zoo_app.command("list")
def list_models() -> None:
    """List the zoo models with family, latent shape, parameters and sample quality."""
    from imgorigin import zoo

    for name in zoo.list_models():
        try:
            card = zoo.model_card(name)
        except FileNotFoundError:
            typer.echo(f"{name:<11} (weights not shipped in this checkout)")
            continue
        fd = card.get("quality", {}).get("frechet_distance")
        typer.echo(
            f"{name:<11} {card.get('family', ''):<28} latent {card.get('latent_shape')}  "
            f"{card.get('parameters', '?')} params  FD {fd if fd is not None else 'n/a'}"
        )


@zoo_app.command("sample")
def sample(
    name: Annotated[str, typer.Argument(help="Zoo model name (see `imgorigin zoo list`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the 8-bit PNG files.")],
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="How many images.")] = 64,
    seed: Annotated[int, typer.Option(help="Sampling seed (same seed, same images).")] = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Write N images of a zoo model, by its own sampling procedure, as 8-bit PNG files NAME_SEED_INDEX.png."""
    from imgorigin import zoo
    from imgorigin.images import save_png

    _check(name)
    out.mkdir(parents=True, exist_ok=True)
    images = zoo.sample(name, n, seed=seed, device=resolve_device(device))
    for i, image in enumerate(images):
        save_png(image, out / f"{name}_{seed}_{i:05d}.png")
    typer.echo(f"wrote {n} images of {name} to {out}", err=True)


@zoo_app.command("train")
def train(
    name: Annotated[str, typer.Argument(help="Zoo model name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the weights (the shipped layout).")],
    device: DeviceOpt = "auto",
) -> None:
    """Train a zoo model from its recipe (needs `apt-get install dataset-fashion-mnist`)."""
    from imgorigin import zoo

    _check(name)
    try:
        stats = zoo.train(name, out, device=resolve_device(device))
    except FileNotFoundError as exc:
        fail(str(exc))
    typer.echo(f"trained {name} -> {out / name}: {stats}", err=True)


@zoo_app.command("calibrate")
def calibrate_zoo(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Zoo models (default: all that ship a calibration; ddpm does not, see the README)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder (default: the package's shipped calibration folder).")
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Rebuild the shipped calibration files (each model's shipped inversion settings, fixed seed)."""
    from imgorigin import zoo
    from imgorigin.verification.verifier import calibrate
    from imgorigin.zoo.calibrations import (
        NOT_CALIBRATED,
        SHIPPED_SAMPLES,
        SHIPPED_SEED,
        calibration_dir,
        inversion_config,
    )

    target = out or calibration_dir()
    for name in names or [n for n in zoo.list_models() if n not in NOT_CALIBRATED]:
        _check(name)
        generator = zoo.load(name, device=resolve_device(device))
        calibration = calibrate(
            generator, SHIPPED_SAMPLES, config=inversion_config(name), seed=SHIPPED_SEED, progress=progress_enabled()
        )
        path = calibration.save(target / f"{name}.json")
        typer.echo(f"{name}: {calibration.scores.size} scores -> {path}", err=True)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the ``zoo`` command group."""
    app.add_typer(zoo_app, name="zoo")
