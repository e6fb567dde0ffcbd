"""Loaders for the generator formats a MODEL spec can name: TorchScript files, diffusers folders or offline hub ids,
and ``package.module:function`` factories. :mod:`imgorigin.verification.sources` chooses among them.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import torch

from imgorigin.errors import ImgoriginError
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.generators.torch_module import ModuleGenerator

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
AUTOENCODER_CLASSES = ("AutoencoderKL", "VQModel")


class ModelSpecError(ImgoriginError, ValueError):
    """A MODEL spec that names nothing loadable; the message lists the accepted forms."""


def load_factory(spec: str) -> Generator:
    """Call ``package.module:function`` and wrap what it returns as a Generator."""
    module_name, func_name = spec.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise ModelSpecError(f"MODEL {spec!r}: cannot import {func_name} from {module_name} ({exc})") from exc
    made = factory()
    if isinstance(made, Generator):
        return made
    if isinstance(made, torch.nn.Module) and hasattr(made, "latent_shape"):
        return ModuleGenerator(made, made.latent_shape, id=spec, output_range=getattr(made, "output_range", "tanh"))
    raise ModelSpecError(
        f"MODEL {spec!r}: the factory returned {type(made).__name__}; it must return an imgorigin Generator "
        "or a torch.nn.Module with a 'latent_shape' attribute"
    )


def load_diffusers(source: str | Path, *, ddim_steps: int | None = None) -> Generator:
    """Load a diffusers autoencoder, UNet + scheduler, or pipeline folder, from disk or the offline cache only."""
    import diffusers

    root = Path(source)
    local = root.is_dir()
    index = _read_json(root / "model_index.json") if local else None
    config = _read_json(root / "config.json") if local else None
    kwargs = {"local_files_only": True}
    try:
        if index is not None or not local:
            return _load_pipeline_parts(diffusers, str(source), index, ddim_steps, kwargs)
        class_name = (config or {}).get("_class_name")
        if class_name in AUTOENCODER_CLASSES:
            from imgorigin.verification.generators.autoencoder import AutoencoderGenerator

            vae = getattr(diffusers, class_name).from_pretrained(str(root), **kwargs)
            return AutoencoderGenerator(vae, id=str(source))
        if class_name == "UNet2DModel":
            scheduler_dir = root / "scheduler" if (root / "scheduler").is_dir() else root
            unet = diffusers.UNet2DModel.from_pretrained(str(root), **kwargs)
            scheduler = diffusers.DDIMScheduler.from_pretrained(str(scheduler_dir), **kwargs)
            return _ddim(unet, scheduler, ddim_steps, str(source))
    except OSError as exc:
        raise ModelSpecError(
            f"MODEL {source}: could not load offline ({exc}). Copy the model folder here and pass its path."
        ) from exc
    raise ModelSpecError(
        f"MODEL {source}: a directory without a diffusers model (config.json of class {AUTOENCODER_CLASSES} or "
        "UNet2DModel, or a pipeline with model_index.json)"
    )


def _load_pipeline_parts(diffusers, source: str, index: dict | None, ddim_steps: int | None, kwargs: dict) -> Generator:
    """A pipeline: its VAE when it has one (latent diffusion), else its UNet through DDIM (pixel diffusion)."""
    from imgorigin.verification.generators.autoencoder import AutoencoderGenerator

    index = index if index is not None else diffusers.DiffusionPipeline.load_config(source, **kwargs)
    if "vae" in index:
        vae_class = getattr(diffusers, index["vae"][1])
        return AutoencoderGenerator(vae_class.from_pretrained(source, subfolder="vae", **kwargs), id=source)
    if "unet" in index and "scheduler" in index:
        unet = diffusers.UNet2DModel.from_pretrained(source, subfolder="unet", **kwargs)
        scheduler = diffusers.DDIMScheduler.from_pretrained(source, subfolder="scheduler", **kwargs)
        return _ddim(unet, scheduler, ddim_steps, source)
    raise ModelSpecError(f"MODEL {source}: pipeline has neither a 'vae' nor a 'unet' + 'scheduler'")


def _ddim(unet, scheduler, ddim_steps: int | None, source: str) -> Generator:
    from imgorigin.verification.generators.ddim import DDIMGenerator

    return DDIMGenerator(unet, scheduler, ddim_steps or 20, id=source)


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None
