"""Adapter for any ``torch.nn.Module`` that maps a latent z to an image (GAN generator, VAE decoder)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from imgorigin.verification.generators.base import Generator

OutputRange = Literal["tanh", "unit"]


def to_unit_range(images: torch.Tensor, output_range: OutputRange) -> torch.Tensor:
    """Map a model's raw output to [0, 1]: ``tanh`` outputs live in [-1, 1], ``unit`` outputs already in [0, 1]."""
    if output_range == "tanh":
        images = (images + 1) / 2
    elif output_range != "unit":
        raise ValueError(f"output_range must be 'tanh' or 'unit', not {output_range!r}")
    return images.clamp(0, 1)


class ModuleGenerator(Generator):
    """A generator built in Python: ``module(z)`` returns ``[B, C, H, W]`` in ``output_range``.

    Optional ``encoder(x)`` (x in [0, 1]) returns a starting latent, e.g. a VAE encoder's posterior mean.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        latent_shape: Sequence[int],
        *,
        id: str = "module",
        output_range: OutputRange = "tanh",
        encoder: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.encoder = encoder
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.id = id
        self.output_range = output_range
        self.eval()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return to_unit_range(self.module(z), self.output_range)

    def encode(self, images: torch.Tensor) -> torch.Tensor | None:
        if self.encoder is None:
            return None
        return self.encoder(images).reshape(images.shape[0], *self.latent_shape)

    @property
    def has_encoder(self) -> bool:
        return self.encoder is not None

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.module, self.encoder) if m is not None]
