"""Pieces every command shares: device option, progress-bar policy, and error exits."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated, NoReturn

import typer

from imgorigin.errors import UsageError

DeviceOpt = Annotated[str, typer.Option(help="Torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:N.")]


RestartOpt = Annotated[
    bool,
    typer.Option("--restart", help="Start --output anew (its records are discarded) instead of resuming it."),
]


def echo(message: str) -> None:
    """A progress or summary line on stderr (stdout carries only records)."""
    typer.echo(message, err=True)


def run_context(**fields: str) -> dict[str, str]:
    """What a report records about the run that made it: the command line and ``fields`` (the report adds the date
    and the version)."""
    return {"command": shlex.join(["imgorigin", *sys.argv[1:]]), **fields}


def progress_enabled() -> bool:
    """Progress bars only on a terminal: none when stderr is piped or redirected."""
    return sys.stderr.isatty()


def fail(message: str) -> NoReturn:
    """Stop the command with ``error: message`` and exit status 2 (a usage or input error)."""
    raise UsageError(message)
