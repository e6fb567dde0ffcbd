"""The ``imgorigin`` command line: one Typer app over the library; each command group lives in its own module.

Every user-facing error is an :class:`~imgorigin.errors.ImgoriginError`, caught here once: one ``error: ...``
line on stderr and exit status 2, never a traceback. Exit status 1 means some inputs could not be read.
"""

from __future__ import annotations

import importlib

import click
import typer
from typer.core import TyperGroup

from imgorigin.errors import ImgoriginError


class _Group(TyperGroup):
    """The root command group: turns any ImgoriginError raised by a command into ``error: ...`` and exit 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ImgoriginError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    name="imgorigin",
    cls=_Group,
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
COMMAND_MODULES = (
    "demo",
    "verify",
    "zoo",
    "attribute",
    "evaluate",
    "bind",
    "bench_attribute",
    "backbones",
    "serve",
    "bench_robustness",
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app, bench_app)


def main() -> None:
    """Console-script entry point."""
    app()
