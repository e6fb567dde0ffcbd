"""``imgorigin bind``: bind a classifier's known classes to generators, or re-bind them, without refitting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

BIND_HELP = (
    "LABEL=MODEL or LABEL=MODEL@CALIBRATION: confirm class LABEL by verification against MODEL (any "
    "form `verify` accepts; zoo models use their shipped calibration). Repeatable."
)


def bind(
    classifier_dir: Annotated[Path, typer.Argument(metavar="CLF", help="Classifier folder from `imgorigin fit`.")],
    bindings: Annotated[list[str] | None, typer.Argument(metavar="LABEL=MODEL[@CAL]...", help=BIND_HELP)] = None,
    unbind: Annotated[list[str] | None, typer.Option(help="Labels to make feature-only again.")] = None,
) -> None:
    """Show, add, replace or remove the models bound to a classifier's classes (stored in CLF/bindings.json)."""
    from imgorigin.twostage import Bindings

    current = Bindings.load(classifier_dir).merged(Bindings.parse(bindings or []), unbind or [])
    current.save(classifier_dir)
    for label, binding in sorted(current.items()):
        typer.echo(f"{label} = {binding.model}" + (f" @ {binding.calibration}" if binding.calibration else ""))
    if not current:
        typer.echo("no class is bound: attribution uses features only", err=True)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the ``bind`` command."""
    app.command()(bind)
