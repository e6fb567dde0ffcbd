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
    module: torch.nn.Module, latent_dim: int, name: str, device: str | torch.device = "cpu"
) -> ModuleGenerator:
    """A zoo GAN generator (z ~ N(0, I) in R^latent_dim → tanh image) as a verification Generator."""
    from imgorigin.verification.generators.torch_module import ModuleGenerator

    return ModuleGenerator(module, (latent_dim,), id=f"zoo:{name}", output_range="tanh").to(device)
