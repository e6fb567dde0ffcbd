"""The model zoo: small generators trained on Fashion-MNIST and on colour photo crops, shipped with the package.

It is the embedded default for the demo and the benchmark for verification and attribution:

================ ===================================================================================
name             generator that verification inverts
================ ===================================================================================
dcgan            DCGAN generator, latent z [64]
dcgan-twin       same recipe as dcgan with another seed (the hardest case), latent z [64]
wgangp           another GAN architecture trained with WGAN-GP, latent z [64]
vae              VAE decoder, latent z [16] (encoder available for initialisation)
ddpm             x_T [1, 28, 28] → deterministic DDIM chain (10 steps) → image
ldm              AutoencoderKL decoder, scaled latent [4, 7, 7] (encoder initialisation); samples come from
                 the latent diffusion model (DDIM, 10 steps) decoded by it
ddpm-one-step    x_T [1, 28, 28] → one evaluation of a student distilled from ddpm → image
dcgan-rgb        colour DCGAN (64×64 RGB), latent z [100]; trained on photo crops (:mod:`imgorigin.zoo.photos`)
vae-rgb          colour VAE decoder (32×32 RGB), latent z [64] (encoder available)
ldm-rgb          colour latent diffusion, weak autoencoder (f = 4): decoder latent [4, 8, 8]
ldm-rgb-strong   colour latent diffusion, strong autoencoder (f = 1): decoder latent [4, 32, 32]
ldm-rgb-strong-b ldm-rgb-strong's autoencoder with another latent UNet (another model, same autoencoder)
================ ===================================================================================

API: :func:`list_models`, :func:`load`, :func:`sample`, :func:`train`, :func:`model_card`. Data:
:mod:`imgorigin.zoo.data`. Each family's architecture and ``load`` are in ``zoo/<family>.py``; its training is in
``zoo/training/<family>.py``, imported only by :func:`train`, so loading a model never imports training code.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from imgorigin.errors import ImgoriginError
from imgorigin.verification.sources import ModelSource
from imgorigin.zoo.registry import RECIPES, Recipe, get_recipe

__all__ = [
    "RECIPES",
    "SOURCE",
    "MissingWeightsError",
    "Recipe",
    "get_recipe",
    "list_models",
    "load",
    "model_card",
    "sample",
    "train",
    "weights_dir",
]


class MissingWeightsError(ImgoriginError, FileNotFoundError):
    """A zoo model whose weights are not in the folder given (or not shipped in this checkout)."""


def weights_dir() -> Path:
    """The directory of the shipped weights (one sub-folder per model, with its ``card.json``)."""
    return Path(str(resources.files(__name__) / "weights"))


def list_models() -> list[str]:
    """Names of the zoo models, in a fixed order."""
    return list(RECIPES)


def _check_shipped(name: str, root: Path) -> None:
    missing = [f for f in get_recipe(name).weight_files() if not (root / f).is_file()]
    if missing:
        raise MissingWeightsError(
            f"zoo model {name!r}: weight file(s) {', '.join(missing)} not found under {root}; "
            f"train them with imgorigin.zoo.train({name!r}, out_dir) and pass weights=out_dir"
        )


def load(name: str, device: str | torch.device = "cpu", weights: str | os.PathLike | None = None):
    """The :class:`~imgorigin.verification.generators.Generator` that verification inverts, in eval mode on ``device``.

    ``weights``: a directory laid out like the shipped one (what :func:`train` writes); default the shipped weights.
    """
    recipe = get_recipe(name)
    root = Path(weights) if weights is not None else weights_dir()
    _check_shipped(name, root)
    return recipe.module.load(recipe.config, root, device)


def sample(
    name: str,
    n: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    weights: str | os.PathLike | None = None,
    batch_size: int = 100,
) -> torch.Tensor:
    """``n`` images ``[n, C, H, W]`` in [0, 1] (``[n, 1, 28, 28]``; ``dcgan-rgb``: ``[n, 3, 64, 64]``; the other
    colour models ``[n, 3, 32, 32]``) from the model's own sampling procedure, deterministic per seed.

    For the ``ldm`` models the latents come from the latent diffusion model (DDIM) and are decoded by the autoencoder;
    for the others this is ``load(name).sample(n, seed)`` (latents from the prior, then decode).
    """
    gen = load(name, device=device, weights=weights)
    return gen.sample(n, seed=seed, batch_size=batch_size)


def train(
    name: str,
    out_dir: str | os.PathLike,
    device: str | torch.device | None = None,
    *,
    images: torch.Tensor | None = None,
    max_steps: int | None = None,
    log=None,
) -> dict[str, Any]:
    """Train ``name`` from its recipe into ``out_dir/<name>/`` (the shipped layout); returns training stats.

    ``device``: ``None`` picks CUDA when available. ``images`` (``[N, 1, 28, 28]`` in [0, 1]) replaces the
    Fashion-MNIST train split (for smoke tests); ``max_steps`` caps the optimisation steps (of every stage).
    The stats are also written to ``out_dir/<name>/training.json``. Same seed and device reproduce the
    shipped weights up to floating-point non-determinism (bit-exactness across machines is not promised).
    """
    from imgorigin.zoo.training.common import config_dict, default_log, environment, write_json

    recipe = get_recipe(name)
    out = Path(out_dir)
    stats = recipe.training_module.train(
        recipe.config, out, device=device, images=images, max_steps=max_steps, log=log or default_log
    )
    record = {"name": name, "config": config_dict(recipe.config), "training": stats, "environment": environment()}
    write_json(out / name / "training.json", record)
    return stats


def model_card(name: str) -> dict[str, Any]:
    """The shipped model card: architecture, parameters, training (steps, time, seed, device), weights
    (files, bytes, sha256), sampling procedure and sample quality (Fréchet distance to the test split)."""
    get_recipe(name)
    path = weights_dir() / name / "card.json"
    if not path.is_file():
        raise FileNotFoundError(f"no model card for {name!r} at {path}")
    return json.loads(path.read_text())


def _load_spec(name: str, ddim_steps: int | None = None):
    """``zoo:NAME`` for the model-source resolver (each zoo model has its own sampler settings)."""
    return load(name)


def _shipped_calibration(name: str) -> Path:
    from imgorigin.zoo.calibrations import calibration_path

    return calibration_path(name)


#: ``zoo:NAME`` specs, declared as the ``zoo`` entry point of ``imgorigin.sources`` in pyproject.toml.
SOURCE = ModelSource("zoo", _load_spec, _shipped_calibration)
