"""Generators: the protocol verification needs, one adapter module per model family, and loading by spec."""

from imgorigin.verification.generators.base import Generator
from imgorigin.verification.generators.loading import ModelSpecError
from imgorigin.verification.generators.torch_module import ModuleGenerator
from imgorigin.verification.generators.torchscript import TorchScriptError, load_torchscript

__all__ = ["Generator", "ModelSpecError", "ModuleGenerator", "TorchScriptError", "load_torchscript"]
