"""The zoo's models by name: each name is one recipe family (a runtime and a training module) plus a frozen config."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

from imgorigin.verification.generators.loading import ModelSpecError
from imgorigin.zoo.dcgan import DCGANConfig
from imgorigin.zoo.dcgan_rgb import DCGANRGBConfig
from imgorigin.zoo.ddpm import DDPMConfig
from imgorigin.zoo.ldm import LDMConfig
from imgorigin.zoo.onestep import OneStepConfig
from imgorigin.zoo.vae import VAEConfig
from imgorigin.zoo.wgangp import WGANGPConfig

#: The colour latent models: 32×32 RGB photo crops, the same latent diffusion recipe on two autoencoders.
COLOUR_LDM = LDMConfig(image_size=32, channels=3, training_crops=20_000, half=True)
WEAK_RGB_LDM = replace(
    COLOUR_LDM, name="ldm-rgb", seed=10, ae_block_out_channels=(16, 32, 32), ae_steps=1000, steps=1500
)
STRONG_RGB_LDM = replace(
    COLOUR_LDM,
    name="ldm-rgb-strong",
    seed=20,
    ae_block_out_channels=(32,),
    # 4 latent channels, as Stable Diffusion's: the 3-channel layout stopped at 31.6 dB held-out PSNR, this one
    # passes the strong-autoencoder bar of 35 dB (on the card)
    latent_channels=4,
    ae_mid_attention=False,
    ae_steps=4000,
    ae_patch=16,
    ae_posterior_mean=True,
    ae_lr=3e-3,
    kl_weight=1e-6,
    block_out_channels=(16, 32, 64),
    down_block_types=("DownBlock2D",) * 3,
    up_block_types=("UpBlock2D",) * 3,
    norm_num_groups=8,
    # Stable Diffusion's noise schedule: with the pixel DDPM's linear 1e-4..0.02 (alpha_bar at t = 999: 4e-5) the
    # first DDIM step multiplies the UNet's error 160-fold, and the samples' latents had 3.4-3.8x the data's spread
    # with a third of their pixels decoded to 0 or 255, at 1500 or 3000 UNet steps alike (alpha_bar here: 0.0047)
    beta_schedule="scaled_linear",
    beta_start=0.00085,
    beta_end=0.012,
    steps=2500,
    batch_size=32,
)


@dataclass(frozen=True)
class Recipe:
    """A zoo entry: its family's modules, ``zoo/<family>.py`` (architecture, ``load``, ``weight_files``) and
    ``zoo/training/<family>.py`` (``train``), and its hyper-parameters."""

    name: str
    module_name: str
    config: Any
    summary: str

    @property
    def module(self) -> ModuleType:
        """The runtime module (architecture, weight files, ``load``): all that verification needs."""
        return importlib.import_module(f"{__package__}.{self.module_name}")

    @property
    def training_module(self) -> ModuleType:
        """The training module (``train``), imported only when a model is trained."""
        return importlib.import_module(f"{__package__}.training.{self.module_name}")

    @property
    def family(self) -> str:
        """The model family, as the model card names it."""
        return self.module.FAMILY

    def weight_files(self) -> list[str]:
        """The weight files of this model, relative to a weights folder (what ``load`` needs)."""
        return self.module.weight_files(self.config)


#: The model names are part of the interface (CLI, benchmarks, calibration files refer to them).
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "dcgan",
            "dcgan",
            DCGANConfig(name="dcgan", seed=0),
            "DCGAN, z ∈ R^64, transposed convolutions + BatchNorm, tanh output",
        ),
        Recipe(
            "dcgan-twin",
            "dcgan",
            DCGANConfig(name="dcgan-twin", seed=1),
            "the dcgan recipe with another seed: same architecture and data, different weights",
        ),
        Recipe(
            "wgangp",
            "wgangp",
            WGANGPConfig(),
            "a different GAN architecture (linear + upsample-convolutions) trained with WGAN-GP, z ∈ R^64",
        ),
        Recipe(
            "vae",
            "vae",
            VAEConfig(),
            "convolutional VAE; the generator is the decoder, z ∈ R^16; encoder kept for initialisation",
        ),
        Recipe(
            "ddpm",
            "ddpm",
            DDPMConfig(),
            "pixel diffusion, diffusers UNet2DModel on 28×28; generator x_T → 10-step deterministic DDIM",
        ),
        Recipe(
            "ldm",
            "ldm",
            LDMConfig(),
            "latent diffusion: AutoencoderKL 28×28 → 4×7×7 + latent UNet2DModel; generator = the decoder",
        ),
        Recipe(
            "ddpm-one-step",
            "onestep",
            OneStepConfig(),
            "one-step student of ddpm (its UNet called once at t = 999), x_T [1, 28, 28] → image in one evaluation",
        ),
        Recipe(
            "dcgan-rgb",
            "dcgan_rgb",
            DCGANRGBConfig(),
            "colour DCGAN (the PyTorch tutorial's, 3.6 M parameters), z ∈ R^100, 64×64 RGB photo crops",
        ),
        Recipe(
            "vae-rgb",
            "vae",
            VAEConfig(
                name="vae-rgb",
                seed=12,
                latent_dim=64,
                image_size=32,
                channels=3,
                training_crops=20_000,
                steps=3000,
                half=True,
            ),
            "the vae recipe in colour: 32×32 RGB photo crops, z ∈ R^64; the generator is the decoder",
        ),
        Recipe(
            "ldm-rgb",
            "ldm",
            WEAK_RGB_LDM,
            "colour latent diffusion, weak autoencoder: AutoencoderKL 32×32×3 → 4×8×8 (f = 4, blurry, like SD1.x) "
            "+ latent UNet2DModel; generator = the decoder",
        ),
        Recipe(
            "ldm-rgb-strong",
            "ldm",
            STRONG_RGB_LDM,
            "colour latent diffusion, strong autoencoder: AutoencoderKL 32×32×3 → 4×32×32 (f = 1, SDXL/FLUX-class "
            "reconstructions) + latent UNet2DModel; generator = the decoder",
        ),
        Recipe(
            "ldm-rgb-strong-b",
            "ldm",
            replace(STRONG_RGB_LDM, name="ldm-rgb-strong-b", seed=21, autoencoder_from="ldm-rgb-strong"),
            "ldm-rgb-strong's autoencoder (the same weights) with a latent UNet of another seed: another model, same "
            "autoencoder",
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe of zoo model ``name``; a clear error (``ModelSpecError``) for an unknown name."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ModelSpecError(f"unknown zoo model {name!r}; available: {', '.join(RECIPES)}") from None
