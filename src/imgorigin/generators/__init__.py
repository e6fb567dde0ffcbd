"""Generators: the protocol verification needs, one adapter module per model family, and loading by spec."""

from .base import Generator
from .loading import ModelSpecError, load_generator
from .torch_module import ModuleGenerator
from .torchscript import TorchScriptError, load_torchscript

__all__ = ["Generator", "ModelSpecError", "ModuleGenerator", "TorchScriptError", "load_generator", "load_torchscript"]
