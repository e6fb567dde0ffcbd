"""The Generator protocol: what verification needs from any generative model.

A generator maps a latent tensor to images in [0, 1]. Verification inverts that map, so every adapter
exposes the same five things: an id, the latent shape, a way to sample latents, a differentiable decode,
and (optionally) an encoder that gives a good starting latent for an image.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from imgorigin.runtime import weights_sha256


class Generator(ABC):
    """A differentiable map from latents ``[B, *latent_shape]`` to images ``[B, C, H, W]`` in [0, 1]."""

    #: Human-readable identifier (path, hub id or zoo name); recorded in every result.
    id: str
    #: Shape of one latent, without the batch dimension.
    latent_shape: tuple[int, ...]
    #: sha256 of the learned initialiser bound as this model's encoder (``LearnedInit``), else None: it names
    #: where inversions start, so scores made with it are cached apart.
    init_sha256: str | None = None

    def __init__(self) -> None:
        self._image_shape: tuple[int, int, int] | None = None
        self.device = torch.device("cpu")

    # -- what adapters implement -------------------------------------------------------------------
    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map latents ``[B, *latent_shape]`` to images ``[B, C, H, W]`` in [0, 1]; differentiable in z."""

    @abstractmethod
    def modules(self) -> list[torch.nn.Module]:
        """The torch modules whose weights define the model (moved by :meth:`to`, hashed by :meth:`weight_hash`)."""

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` latents from the model's prior (standard normal unless the family says otherwise)."""
        return torch.randn((n, *self.latent_shape), generator=generator).to(self.device)

    def encode(self, images: torch.Tensor) -> torch.Tensor | None:
        """A starting latent for each image ``[B, C, H, W]`` in [0, 1], or None when the model has no encoder."""
        return None

    @property
    def has_encoder(self) -> bool:
        """Whether :meth:`encode` returns latents (used to pick encoder initialisation by default)."""
        return False

    # -- shared behaviour ----------------------------------------------------------------------------
    def to(self, device: str | torch.device) -> Generator:
        """Move the model to ``device`` and return self."""
        self.device = torch.device(device)
        for module in self.modules():
            module.to(self.device)
        return self

    def eval(self) -> Generator:
        """Put every module in inference mode and freeze its weights (inversion only optimises latents)."""
        for module in self.modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)
        return self

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the decoded images, found by decoding one latent once."""
        if self._image_shape is None:
            with torch.no_grad():
                out = self.decode(self.sample_latents(1, torch.Generator().manual_seed(0)))
            self._image_shape = tuple(int(s) for s in out.shape[1:])  # type: ignore[assignment]
        return self._image_shape  # type: ignore[return-value]

    def weight_hash(self) -> str:
        """sha256 over every parameter and buffer, so a result names exactly which weights produced it."""
        return weights_sha256(*self.modules())

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, batch_size: int = 64) -> torch.Tensor:
        """Generate ``n`` images ``[n, C, H, W]`` in [0, 1] on the CPU, deterministically from ``seed``."""
        rng = torch.Generator().manual_seed(seed)
        latents = self.sample_latents(n, rng)
        out = [self.decode(latents[i : i + batch_size]).clamp(0, 1).cpu() for i in range(0, n, batch_size)]
        return torch.cat(out) if out else torch.empty((0, *self.image_shape))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, latent_shape={self.latent_shape})"
