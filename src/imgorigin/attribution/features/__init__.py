"""Frozen feature extractors (backbones) by name, and an on-disk feature cache keyed by image content."""

from imgorigin.attribution.features.base import Backbone, BackboneError
from imgorigin.attribution.features.cache import embed_paths, embed_paths_layers
from imgorigin.attribution.features.registry import DEFAULT_BACKBONE, create_backbone, list_backbones

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneError",
    "create_backbone",
    "embed_paths",
    "embed_paths_layers",
    "list_backbones",
]
