"""Generators: the protocol verification needs, one adapter module per model family, and loading by spec."""

from .base import Generator
from .torch_module import ModuleGenerator
from .torchscript import load_torchscript

__all__ = ["Generator", "ModuleGenerator", "load_torchscript"]
