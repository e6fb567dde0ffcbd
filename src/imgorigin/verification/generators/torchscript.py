"""Adapter for a TorchScript file: the way to hand the CLI a model without our code knowing its class.

Contract: ``forward(z)`` takes ``[B, *latent_shape]`` and returns ``[B, C, H, W]`` in [-1, 1]; the scripted
module carries an attribute ``latent_shape`` (list of ints). An optional attribute ``output_range`` set to
``"unit"`` declares outputs in [0, 1] instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from imgorigin.errors import ImgoriginError
from imgorigin.verification.generators.torch_module import ModuleGenerator


class TorchScriptError(ImgoriginError, ValueError):
    """The file is not a TorchScript generator that follows the contract above."""


def load_torchscript(path: str | Path, map_location: str = "cpu") -> ModuleGenerator:
    """Load a ``torch.jit.save`` file as a generator, checking the contract with a clear error."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated upstream but is the contract users save to
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=map_location)
    except Exception as exc:  # torch raises RuntimeError / ValueError variants for non-TorchScript files
        raise TorchScriptError(f"{path}: not a TorchScript file ({exc.__class__.__name__}: {exc})") from exc
    if not hasattr(module, "latent_shape"):
        raise TorchScriptError(
            f"{path}: the scripted module has no attribute 'latent_shape'; set `self.latent_shape: List[int]` "
            "in __init__ before torch.jit.script"
        )
    latent_shape = [int(s) for s in module.latent_shape]
    output_range = str(getattr(module, "output_range", "tanh"))
    generator = ModuleGenerator(module, latent_shape, id=str(path), output_range=output_range)  # type: ignore[arg-type]
    with torch.no_grad():
        out = generator.module(torch.zeros(1, *latent_shape))
    if out.dim() != 4:
        raise TorchScriptError(f"{path}: forward(z) must return [B, C, H, W], got shape {tuple(out.shape)}")
    return generator
