"""Backbones by name, timm-style: ``create_backbone("efficientnet-lite0")``, ``create_backbone("clip:DIR")``,
``create_backbone("clip-vit-b16")`` (an ONNX preset), ``create_backbone("onnx:PATH")``.

Families are imported only when asked for, so that a spectrum run never pays for importing transformers.
"""

from __future__ import annotations

import importlib

import torch

from imgorigin.attribution.features.base import Backbone, BackboneError

#: family -> (module, class or factory, whether the name needs ":SOURCE", one-line description)
_FAMILIES: dict[str, tuple[str, str, bool, str]] = {
    "efficientnet-lite0": (
        "efficientnet",
        "EfficientNetLite0Backbone",
        False,
        "EfficientNet-Lite0, ImageNet weights shipped with the package (default)",
    ),
    "spectrum": ("spectrum", "SpectrumBackbone", False, "Fourier spectrum of the noise residual, no weights"),
    "clip": ("vit", "ViTBackbone", True, "CLIP vision transformer from a local directory or offline HF cache"),
    "dinov2": ("vit", "ViTBackbone", True, "DINOv2 vision transformer from a local directory or offline HF cache"),
    "clip-vit-b16": (
        "onnx_presets",
        "preset_backbone",
        False,
        "OpenAI CLIP ViT-B/16 image tower, INT8 ONNX (imgorigin backbones fetch clip-vit-b16)",
    ),
    "onnx": ("onnx_presets", "onnx_backbone", True, "any ONNX ViT image tower (.onnx file), through onnxruntime"),
}
DEFAULT_BACKBONE = "efficientnet-lite0"


def list_backbones() -> dict[str, str]:
    """Backbone names (``family:SOURCE`` where a model source is needed) with a one-line description."""
    return {(f"{family}:SOURCE" if needs else family): text for family, (_, _, needs, text) in _FAMILIES.items()}


def create_backbone(name: str, device: str | torch.device = "cpu") -> Backbone:
    """Build the backbone ``name`` ("family" or "family:SOURCE") on ``device``, ready to ``embed``."""
    family, _, source = name.partition(":")
    if family not in _FAMILIES:
        raise BackboneError(f"unknown backbone {name!r}; choose one of: {', '.join(list_backbones())}")
    module_name, class_name, needs_source, _ = _FAMILIES[family]
    backbone_class = getattr(importlib.import_module(f"{__package__}.{module_name}"), class_name)
    if needs_source:
        return backbone_class(family, source, device=device)
    if source:
        raise BackboneError(f"backbone {family!r} takes no ':SOURCE' part, got {name!r}")
    return backbone_class(name, device=device)
