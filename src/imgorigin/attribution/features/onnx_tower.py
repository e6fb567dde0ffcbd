"""Any ONNX vision-transformer image tower through onnxruntime: the CLS token (or mean patch token) of one block.

As for ``ViTBackbone``, block k (1-based) is the output of the k-th transformer block, before any final LayerNorm
or projection; in an exported graph that is the output of the block's second residual ``Add`` node, named
``.../layers.{k-1}/Add_1`` by transformers exports (``.../blocks.{k-1}/Add_1`` by timm). Layer "k" is the CLS
token (index 0) of that [B, T, D] output, layer "k.mean" the mean of its other tokens. Each inference session
keeps only the nodes the asked blocks depend on, so block 8 of 12 costs 8 blocks. Sessions run on onnxruntime's
CPU provider, or its CUDA provider when a CUDA device is asked for and the installed onnxruntime has it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imgorigin.attribution.features.base import Backbone, BackboneError, to_rgb_batch

BLOCK_NODE = re.compile(r"(?:^|/)(?:layers?|blocks?)\.(\d+)/Add_1$")
MEAN_SUFFIX = ".mean"
PROCESSOR_FILE = "preprocessor_config.json"
#: Pillow resampling codes (as in Hugging Face processor files) -> torch modes; others (Lanczos) read as bicubic.
PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
INSTALL_HINT = 'pip install "imgorigin[clip]"'


def import_runtime() -> tuple[ModuleType, ModuleType]:
    """The ``onnx`` and ``onnxruntime`` modules, or BackboneError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise BackboneError(f"ONNX backbones need onnx and onnxruntime ({err}): {INSTALL_HINT}") from None
    return onnx, onnxruntime


@dataclass(frozen=True)
class Preprocessing:
    """How images in [0, 1] become model input: resize, centre crop, then (x - mean) / std per channel.

    ``resize`` is the shortest side after an aspect-keeping resize (an int) or an exact (height, width);
    ``crop`` the centre crop taken after it (None: none). Interpolation is antialiased like Pillow's.
    """

    resize: int | tuple[int, int]
    crop: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(height, width) of the model input, or None when it follows the image's aspect ratio."""
        return self.crop or (self.resize if isinstance(self.resize, tuple) else None)

    @property
    def id(self) -> str:
        """A short description of every step, for feature-cache keys."""
        resize = f"short{self.resize}" if isinstance(self.resize, int) else f"{self.resize[0]}x{self.resize[1]}"
        crop = f"-crop{self.crop[0]}x{self.crop[1]}" if self.crop else ""
        mean, std = ",".join(f"{v:g}" for v in self.mean), ",".join(f"{v:g}" for v in self.std)
        return f"rgb-{self.interpolation}-{resize}{crop}-mean{mean}-std{std}"

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """[C, H, W] or [B, C, H, W] images in [0, 1] -> normalised [3, h, w] or [B, 3, h, w] model input."""
        batch = to_rgb_batch(images)
        height, width = batch.shape[-2:]
        if isinstance(self.resize, int):
            scale = self.resize / min(height, width)
            size = (max(round(height * scale), 1), max(round(width * scale), 1))
        else:
            size = self.resize
        if size != (height, width):
            smooth = self.interpolation != "nearest"
            batch = F.interpolate(batch, size=size, mode=self.interpolation, antialias=smooth, align_corners=None)
            batch = batch.clamp(0, 1)
        if self.crop:
            top, left = max(size[0] - self.crop[0], 0) // 2, max(size[1] - self.crop[1], 0) // 2
            batch = batch[..., top : top + self.crop[0], left : left + self.crop[1]]
        mean = torch.tensor(self.mean, dtype=batch.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=batch.dtype).view(1, 3, 1, 1)
        batch = (batch - mean) / std
        return batch[0] if images.ndim == 3 else batch


def _hw(value: int | dict | None) -> tuple[int, int] | None:
    """(height, width) from a processor entry given as an int or {height, width}; None otherwise."""
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    return None


def processor_preprocessing(path: str | Path) -> Preprocessing | None:
    """Preprocessing from a Hugging Face ``preprocessor_config.json`` next to an ONNX file, or None if absent."""
    config_path = Path(path).with_name(PROCESSOR_FILE)
    if not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    size = config.get("size")
    resize = int(size["shortest_edge"]) if isinstance(size, dict) and "shortest_edge" in size else _hw(size)
    crop = _hw(config.get("crop_size")) if config.get("do_center_crop", True) else None
    if resize is None or "image_mean" not in config or "image_std" not in config:
        raise BackboneError(f"{config_path} needs 'size', 'image_mean' and 'image_std'")
    return Preprocessing(
        resize=resize,
        crop=crop,
        mean=tuple(config["image_mean"]),
        std=tuple(config["image_std"]),
        interpolation=PIL_RESAMPLE.get(config.get("resample", 3), "bicubic"),
    )


def block_outputs(graph: Any) -> dict[int, str]:
    """Block number (1-based) -> name of its output tensor, from the graph's residual ``Add_1`` nodes."""
    found = {}
    for node in graph.node:
        match = BLOCK_NODE.search(node.name)
        if match and node.op_type == "Add":
            found[int(match.group(1)) + 1] = node.output[0]
    return dict(sorted(found.items()))


def pruned_model(model: Any, outputs: Sequence[str]) -> Any:
    """A copy of an ONNX model whose graph outputs are ``outputs``, without the nodes they do not depend on."""
    onnx, _ = import_runtime()
    graph = model.graph
    needed, kept = set(outputs), []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    pruned = onnx.ModelProto()
    pruned.CopyFrom(model)
    del pruned.graph.node[:], pruned.graph.initializer[:], pruned.graph.output[:]
    pruned.graph.node.extend(reversed(kept))
    pruned.graph.initializer.extend(t for t in graph.initializer if t.name in needed)
    pruned.graph.output.extend(onnx.ValueInfoProto(name=name) for name in outputs)
    return pruned


def _dims(tensor: Any) -> list[int | str]:
    """The dimensions of a ValueInfoProto: ints where fixed, names (or "") where symbolic."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.type.tensor_type.shape.dim]


def _feature_dims(model: Any, names: Sequence[str]) -> dict[str, int]:
    """Last dimension of each named tensor, from the graph's shape annotations or ONNX shape inference."""
    onnx, _ = import_runtime()

    def known(graph: Any) -> dict[str, int]:
        infos = [*graph.value_info, *graph.output]
        return {v.name: dims[-1] for v in infos if (dims := _dims(v)) and isinstance(dims[-1], int) and dims[-1] > 0}

    dims = known(model.graph)
    if not set(names) <= set(dims):
        dims = known(onnx.shape_inference.infer_shapes(model).graph)
    return {name: dims[name] for name in names if name in dims}


def session_providers(device: str | torch.device, available: Sequence[str]) -> list[Any]:
    """onnxruntime providers for a torch device: CUDA (that index) then CPU when asked for and available."""
    device = torch.device(device)
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxBackbone(Backbone):
    """Block features of an ONNX image tower: layers "1".."L" (CLS token) and "1.mean".."L.mean" (patch mean)."""

    def __init__(
        self,
        name: str,
        path: str | Path,
        digest: str,
        preprocessing: Preprocessing,
        default_layer: str | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        onnx, ort = import_runtime()
        self.name = name
        self.path = Path(path)
        self.id = f"onnx@{digest[:12]}"
        self.preprocessing = preprocessing
        self.preprocess_id = preprocessing.id
        self.model = onnx.load(str(self.path))
        inputs = [i for i in self.model.graph.input if i.name not in {t.name for t in self.model.graph.initializer}]
        if len(inputs) != 1:
            raise BackboneError(f"{self.path}: expected one image input, found {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        self._check_input(_dims(inputs[0]))
        self.blocks = block_outputs(self.model.graph)
        if not self.blocks:
            raise BackboneError(f"{self.path}: no transformer block outputs (nodes named like .../layers.N/Add_1)")
        dims = _feature_dims(self.model, list(self.blocks.values()))
        self.layer_dims = {}
        for block, tensor in self.blocks.items():
            if tensor not in dims:
                raise BackboneError(f"{self.path}: cannot tell the feature size of block {block} ({tensor})")
            self.layer_dims[str(block)] = self.layer_dims[f"{block}{MEAN_SUFFIX}"] = dims[tensor]
        depth = max(self.blocks)
        layer = str(round(2 * depth / 3)) if default_layer is None else default_layer
        if layer not in self.layer_dims:
            raise BackboneError(f"{self.path}: default layer {layer!r} is not one of its layers (blocks 1..{depth})")
        self.default_layer = layer
        self.providers = session_providers(device, ort.get_available_providers())
        self._sessions: dict[tuple[str, ...], Any] = {}

    def _check_input(self, dims: list[int | str]) -> None:
        """The input must be [B, 3, H, W], with H and W (when fixed) those the preprocessing produces."""
        size = self.preprocessing.input_size
        fixed = tuple(dims[2:]) if len(dims) == 4 and all(isinstance(d, int) and d > 0 for d in dims[2:]) else None
        if len(dims) != 4 or dims[1] not in (3, "") or (fixed and size and fixed != size):
            wanted = f"[B, 3, {size[0]}, {size[1]}]" if size else "[B, 3, H, W]"
            raise BackboneError(
                f"{self.path}: input {self.input_name!r} has shape {dims}; the preprocessing gives {wanted}"
            )

    def _session(self, tensors: tuple[str, ...]) -> Any:
        """An inference session computing just these tensors (built once per set)."""
        if tensors not in self._sessions:
            _, ort = import_runtime()
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: no notes about unused outputs or providers
            model = pruned_model(self.model, tensors).SerializeToString()
            self._sessions[tensors] = ort.InferenceSession(model, options, providers=self.providers)
        return self._sessions[tensors]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Grey to RGB, resize, centre crop and mean/std as the model was trained with."""
        return self.preprocessing.apply(images)

    def _features(self, batch: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        blocks = {layer: int(layer.removesuffix(MEAN_SUFFIX)) for layer in layers}
        tensors = tuple(sorted({self.blocks[block] for block in blocks.values()}))
        pixels = np.ascontiguousarray(batch.cpu().numpy(), dtype=np.float32)
        values = dict(zip(tensors, self._session(tensors).run(list(tensors), {self.input_name: pixels}), strict=True))
        out = {}
        for layer, block in blocks.items():
            tokens = values[self.blocks[block]]
            out[layer] = torch.from_numpy(tokens[:, 1:].mean(axis=1) if layer.endswith(MEAN_SUFFIX) else tokens[:, 0])
        return out
