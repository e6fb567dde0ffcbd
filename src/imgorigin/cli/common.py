"""Pieces every command shares: device option, progress-bar policy, and error exits."""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from imgorigin.errors import UsageError

DeviceOpt = Annotated[str, typer.Option(help="Torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:N.")]


def progress_enabled() -> bool:
    """Progress bars only on a terminal: none when stderr is piped or redirected."""
    return sys.stderr.isatty()


def fail(message: str) -> NoReturn:
    """Stop the command with ``error: message`` and exit status 2 (a usage or input error)."""
    raise UsageError(message)
