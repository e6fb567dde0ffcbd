"""What the zoo recipes share at run time: safetensors weights into a module, a GAN generator as a Generator."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from imgorigin.verification.generators.torch_module import ModuleGenerator


def load_weights(
    module: torch.nn.Module, path: str | os.PathLike, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Load safetensors weights into ``module``; returns it on ``device`` in eval mode."""
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)))
    return module.to(device).eval()


def gan_generator(
    module: torch.nn.Module, latent: int | tuple[int, ...], name: str, device: str | torch.device = "cpu"
) -> ModuleGenerator:
    """A zoo generator that maps z ~ N(0, I) (``latent``: its size or shape) to a tanh image in one call, as a
    verification Generator (the GANs and the one-step student)."""
    from imgorigin.verification.generators.torch_module import ModuleGenerator

    shape = (latent,) if isinstance(latent, int) else tuple(latent)
    return ModuleGenerator(module, shape, id=f"zoo:{name}", output_range="tanh").to(device)
