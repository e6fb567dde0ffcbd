"""Pieces every command shares: device choice, progress-bar policy, and error exits."""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

DeviceOpt = Annotated[str, typer.Option(help="Torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:N.")]


def progress_enabled() -> bool:
    """Progress bars only on a terminal: none when stderr is piped or redirected."""
    return sys.stderr.isatty()


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code`` (2 = bad usage or input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
