"""The Backbone interface shared by every feature extractor: layers, preprocessing and batched embedding."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from imgorigin.errors import ImgoriginError

Images = torch.Tensor | Sequence[torch.Tensor]


class BackboneError(ImgoriginError, ValueError):
    """A backbone that cannot be created: unknown name, or model files that are not available offline."""


class Backbone(ABC):
    """A frozen feature extractor: images in [0, 1] in, one fixed-length float32 vector per image out.

    Subclasses set ``name`` (the spec ``create_backbone`` was given), ``id`` (name plus a digest of the
    weights, so cached features never outlive the weights), ``layer_dims`` (canonical layer name ->
    feature size), ``default_layer``, ``preprocess_id`` (what ``preprocess`` does, for cache keys) and
    ``channels`` (1 or 3: how images should be loaded), and implement ``preprocess`` and ``_features``.
    """

    name: str
    id: str
    layer_dims: Mapping[str, int]
    default_layer: str
    preprocess_id: str
    channels: int = 3
    device: torch.device = torch.device("cpu")
    #: Other accepted spellings of layers (e.g. stage names), mapped to canonical layer names.
    layer_aliases: Mapping[str, str] = {}

    @property
    def layers(self) -> tuple[str, ...]:
        """Canonical names of the selectable layers, shallow to deep."""
        return tuple(self.layer_dims)

    @property
    def feature_dim(self) -> int:
        """Length of the feature vector at the default layer."""
        return self.layer_dims[self.default_layer]

    def resolve_layer(self, layer: str | int | None) -> str:
        """The canonical name of a layer given by name, alias or index; None means the default layer."""
        if layer is None:
            return self.default_layer
        key = str(layer)
        key = self.layer_aliases.get(key, key)
        if key not in self.layer_dims:
            choices = ", ".join([*self.layer_dims, *self.layer_aliases])
            raise BackboneError(f"backbone {self.name!r} has no layer {layer!r}; choose one of: {choices}")
        return key

    @abstractmethod
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Turn [C, H, W] or [B, C, H, W] images in [0, 1] (any size, 1 or 3 channels) into model input."""

    @abstractmethod
    def _features(self, batch: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Features [B, D] at each canonical layer for a preprocessed batch already on ``self.device``."""

    def embed_layers(
        self, images: Images, layers: Sequence[str | int | None], batch_size: int = 64
    ) -> dict[str, np.ndarray]:
        """Features at several layers from one forward pass per batch, as float32 [B, D] arrays by layer."""
        names = list(dict.fromkeys(self.resolve_layer(layer) for layer in layers))
        chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                part = images[start : start + batch_size]
                if isinstance(part, torch.Tensor):
                    batch = self.preprocess(part)
                else:
                    batch = torch.stack([self.preprocess(image) for image in part])
                outputs = self._features(batch.to(self.device), names)
                for name in names:
                    chunks[name].append(outputs[name].float().cpu().numpy())
        return {
            name: np.concatenate(parts) if parts else np.zeros((0, self.layer_dims[name]), np.float32)
            for name, parts in chunks.items()
        }

    def embed(self, images: Images, layer: str | int | None = None, batch_size: int = 64) -> np.ndarray:
        """Features [B, D] (float32) of images [B, C, H, W] in [0, 1], or of a list of [C, H, W] images."""
        return self.embed_layers(images, [layer], batch_size)[self.resolve_layer(layer)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, default_layer={self.default_layer!r})"


def to_rgb_batch(images: torch.Tensor) -> torch.Tensor:
    """[C, H, W] or [B, C, H, W] with 1 or 3 channels as a float [B, 3, H, W] batch (grey replicated)."""
    batch = images[None] if images.ndim == 3 else images
    if batch.ndim != 4 or batch.shape[1] not in (1, 3):
        raise ValueError(f"expected [C, H, W] or [B, C, H, W] images with 1 or 3 channels, got {tuple(images.shape)}")
    batch = batch.float()
    return batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch


def resize_normalise(
    images: torch.Tensor, size: tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """RGB model input: bilinear resize to ``size`` (antialiased when shrinking), then (x - mean) / std.

    Returns [3, H, W] for a single image and [B, 3, H, W] for a batch.
    """
    batch = to_rgb_batch(images)
    if tuple(batch.shape[-2:]) != tuple(size):
        shrinking = batch.shape[-2] > size[0] or batch.shape[-1] > size[1]
        batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    mean_t = torch.tensor(mean, dtype=batch.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=batch.dtype).view(1, 3, 1, 1)
    batch = (batch - mean_t) / std_t
    return batch[0] if images.ndim == 3 else batch
