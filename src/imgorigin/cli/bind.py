"""``imgorigin bind``: bind a classifier's known classes to generators, or re-bind them, without refitting."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgorigin.cli.common import fail

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
    current = apply_bindings(classifier_dir, bindings or [], unbind or [])
    for label, binding in sorted(current.items()):
        typer.echo(f"{label} = {binding.model}" + (f" @ {binding.calibration}" if binding.calibration else ""))
    if not current:
        typer.echo("no class is bound: attribution uses features only", err=True)


def apply_bindings(classifier_dir: Path, texts: list[str], unbind: list[str]) -> dict:
    """Parse, merge into the stored bindings, validate against the classifier's classes, and save."""
    from imgorigin.attribution.openset import load_classifier
    from imgorigin.twostage import Binding, load_bindings, save_bindings

    try:
        classifier = load_classifier(classifier_dir)
        current = load_bindings(classifier_dir)
        for text in texts:
            binding = Binding.parse(text)
            current[binding.label] = binding
        for label in unbind:
            current.pop(label, None)
        save_bindings(classifier_dir, classifier.classes_.tolist(), current)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    return current


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the ``bind`` command."""
    app.command()(bind)
