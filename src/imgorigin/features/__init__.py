"""Frozen feature extractors (backbones) by name, and an on-disk feature cache keyed by image content."""

from .base import Backbone, BackboneError
from .registry import DEFAULT_BACKBONE, create_backbone, list_backbones

__all__ = ["DEFAULT_BACKBONE", "Backbone", "BackboneError", "create_backbone", "list_backbones"]
