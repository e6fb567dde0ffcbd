"""The engine options of the batch commands (``verify``, ``attribute``): one settings object, one panel in --help."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from imgorigin.cli.options import settings_options
from imgorigin.distributed.engine import EngineConfig, expand_manifests

Command = TypeVar("Command", bound=Callable[..., Any])

#: Heading of the engine options in --help.
ENGINE_PANEL = "Engine (--engine ray: score on a Ray cluster; PATHS may name manifests as @FILE)"

__all__ = ["ENGINE_PANEL", "EngineConfig", "engine_options", "expand_manifests"]


def engine_options(command: Command) -> Command:
    """Add ``--engine``, ``--address``, ``--actors``, ... to a command, passed to it as ``engine: EngineConfig``."""
    return settings_options(EngineConfig, into="engine", panel=ENGINE_PANEL)(command)
