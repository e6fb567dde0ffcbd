"""CLIP and DINOv2 vision transformers from ``transformers``: the CLS token of one block's output.

As in Cioni et al. (2024), the feature is the CLS token of an intermediate block's output, taken before the
final (post-)LayerNorm and before any projection; block k (1-based) is ``hidden_states[k]``. Models load
only from a local directory or the offline Hugging Face cache (``local_files_only=True``), never from the
network. Each model gets its own input size, mean and std from the ``preprocessor_config.json`` next to it
when there is one (CLIP models must not get ImageNet statistics), else CLIP's or ImageNet's constants
and the model config's ``image_size``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from imgorigin.attribution.features.base import Backbone, BackboneError, resize_normalise
from imgorigin.runtime import weights_sha256

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: family -> (transformers model class name, default mean, default std)
FAMILIES = {
    "clip": ("CLIPVisionModel", CLIP_MEAN, CLIP_STD),
    "dinov2": ("Dinov2Model", IMAGENET_MEAN, IMAGENET_STD),
}


def _load_model(family: str, source: str) -> torch.nn.Module:
    """The model from a local directory or the offline cache, or BackboneError saying how to get one."""
    import transformers

    model_class = getattr(transformers, FAMILIES[family][0])
    try:
        return model_class.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as err:
        raise BackboneError(
            f"cannot load {family} model {source!r} without the network ({err}). Download it once on a "
            f"machine with internet access: `huggingface-cli download {source} --local-dir DIR` (or "
            f"`hf download ...`), copy DIR here and pass `{family}:DIR`."
        ) from None


def _processor_config(source: str) -> dict:
    """The model's ``preprocessor_config.json`` (local directory or offline cache), or {} if absent."""
    path: str | Path | None = Path(source, "preprocessor_config.json")
    if not Path(source).is_dir():
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source, "preprocessor_config.json")
        path = found if isinstance(found, str) else None
    if path is None or not Path(path).is_file():
        return {}
    return json.loads(Path(path).read_text())


def _side(value: int | dict | None) -> tuple[int, int] | None:
    """(height, width) from a processor size entry: an int, {height, width} or {shortest_edge}."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value:
            return int(value["shortest_edge"]), int(value["shortest_edge"])
    return None


class ViTBackbone(Backbone):
    """CLS token before the final LayerNorm at block "1".."L"; default block round(2L/3) (8 of 12)."""

    def __init__(self, family: str, source: str, device: str | torch.device = "cpu") -> None:
        if not source:
            raise BackboneError(f"give the model as {family}:DIR (a local directory) or {family}:HUB_ID (cached)")
        model = _load_model(family, source)
        self.model = model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.name = f"{family}:{source}"
        self.id = f"{family}@{weights_sha256(model)[:12]}"
        config = model.config
        processor = _processor_config(source)
        _, mean, std = FAMILIES[family]
        self.mean = tuple(processor.get("image_mean", mean))
        self.std = tuple(processor.get("image_std", std))
        self.size = _side(processor.get("crop_size")) or _side(processor.get("size")) or _side(config.image_size)
        depth = config.num_hidden_layers
        self.layer_dims = {str(k): config.hidden_size for k in range(1, depth + 1)}
        self.default_layer = str(round(2 * depth / 3))
        mean_s, std_s = ",".join(f"{v:g}" for v in self.mean), ",".join(f"{v:g}" for v in self.std)
        self.preprocess_id = f"rgb-bilinear{self.size[0]}x{self.size[1]}-mean{mean_s}-std{std_s}"

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Grey to RGB, bilinear resize to the model's input size, then its own mean/std."""
        return resize_normalise(images, self.size, self.mean, self.std)

    def _features(self, batch: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        hidden = self.model(pixel_values=batch, output_hidden_states=True).hidden_states
        return {layer: hidden[int(layer)][:, 0] for layer in layers}
