"""The ``imgorigin`` command line: one Typer app; each command group lives in its own module."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="imgorigin",
    help="Origin attribution of AI-generated images: verify that a model made an image (input "
    "reverse-engineering), or attribute an image to a known generator or 'unknown' (foundation features).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(
    help="Benchmarks that produce the README's tables (long; not part of the tests).", no_args_is_help=True
)
app.add_typer(bench_app, name="bench")

#: Modules under imgorigin.cli that define ``register(app, bench_app)``; each adds its own commands.
COMMAND_MODULES = ("demo", "verify", "zoo", "attribute", "bind")

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a command group not written yet in this checkout
        if exc.name != f"{__name__}.{_name}":
            raise
        continue
    _module.register(app, bench_app)


def main() -> None:
    """Console-script entry point."""
    app()
