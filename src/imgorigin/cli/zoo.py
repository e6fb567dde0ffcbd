"""``imgorigin zoo ...``: the shipped generator zoo (list, sample, train, calibrate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgorigin.cli.common import DeviceOpt, progress_enabled
from imgorigin.runtime import resolve_device

zoo_app = typer.Typer(
    help="The shipped zoo of small generators (Fashion-MNIST, and colour ones on photo crops).", no_args_is_help=True
)


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

    images = zoo.sample(name, n, seed=seed, device=resolve_device(device))
    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        save_png(image, out / f"{name}_{seed}_{i:05d}.png")
    typer.echo(f"wrote {n} images of {name} to {out}", err=True)


@zoo_app.command("train")
def train(
    name: Annotated[str, typer.Argument(help="Zoo model name.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the weights (the shipped layout).")],
    device: DeviceOpt = "auto",
) -> None:
    """Train a zoo model from its recipe (Fashion-MNIST models need `apt-get install dataset-fashion-mnist`,
    dcgan-rgb needs `pip install scikit-image`)."""
    from imgorigin import zoo

    stats = zoo.train(name, out, device=resolve_device(device))
    typer.echo(f"trained {name} -> {out / name}: {stats}", err=True)


@zoo_app.command("calibrate")
def calibrate_zoo(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Zoo models (default: all that ship a calibration; ddpm does not, see the README)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for NAME.json (default: zoo-calibration in the cache folder, $IMGORIGIN_CACHE or "
            "~/.cache/imgorigin). A maintainer rebuilds the shipped files with --out src/imgorigin/zoo/calibration.",
        ),
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Calibrate zoo models exactly as their shipped calibrations were made (settings, sample count, seed)."""
    from imgorigin import zoo
    from imgorigin.zoo.calibrations import NOT_CALIBRATED, calibrate_shipped, output_dir

    chosen = names or [n for n in zoo.list_models() if n not in NOT_CALIBRATED]
    for name in chosen:
        zoo.get_recipe(name)  # an unknown name fails before any model is calibrated
    torch_device, target = resolve_device(device), output_dir(out)
    for name in chosen:
        calibration = calibrate_shipped(name, device=torch_device, progress=progress_enabled())
        path = calibration.save(target / f"{name}.json")
        typer.echo(f"{name}: {calibration.scores.size} scores -> {path}", err=True)
    typer.echo(f"wrote {len(chosen)} calibration file(s) to {target}", err=True)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the ``zoo`` command group."""
    app.add_typer(zoo_app, name="zoo")
