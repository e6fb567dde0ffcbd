"""``ldm`` and the colour latent models: a small diffusers ``AutoencoderKL`` plus a small ``UNet2DModel`` trained
with the DDPM objective in its (scaled) latent space, sampled by deterministic DDIM.

For verification the generator is the AUTOENCODER DECODER (scaled latent → image), initialised from the
encoder's posterior mean, as LatentTracer does for Stable Diffusion. For sampling, latents come from the latent
diffusion model (x_T ~ N(0, I) → DDIM, a :class:`~imgorigin.verification.generators.autoencoder.LatentDiffusion`
bound to the generator, which the diffusion scores of :mod:`imgorigin.verification.diffusion` use) and are decoded.

Stage 1 (autoencoder): L1 + MSE reconstruction on images in [-1, 1] + a small KL term; the scaling factor
(1 / std of the posterior-mean latents of the training set) is stored in the VAE config, as for SD. A recipe
with ``autoencoder_from`` skips stage 1 and reuses another recipe's trained autoencoder (copied into its own
folder, so every model folder stays a self-contained diffusers layout): two models that differ only in the UNet.
Stage 2 (latent diffusion): ε-prediction, 1000-step β schedule (linear 1e-4..0.02 as the pixel DDPM's, or
Stable Diffusion's ``scaled_linear`` 0.00085..0.012 for the strong pair), on the scaled posterior means.

``ldm`` is 28×28 grayscale (Fashion-MNIST, 7×7×4 latents, single-resolution UNet). The colour ones are 32×32 RGB
on photo crops (:mod:`imgorigin.zoo.photos`): ``ldm-rgb`` with a weak autoencoder (f = 4, blurry, like SD1.x) and
``ldm-rgb-strong`` / ``ldm-rgb-strong-b`` on one strong autoencoder (low compression, held-out PSNR on its card).

Shipped as diffusers folders under ``weights/NAME/``: ``vae`` (``AutoencoderKL``), ``unet`` (latent
``UNet2DModel``) and ``scheduler`` (``DDIMScheduler``). Training of both stages: :mod:`imgorigin.zoo.training.ldm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from imgorigin.verification.generators.autoencoder import AutoencoderGenerator

FAMILY = "latent diffusion (AutoencoderKL + latent DDPM, DDIM sampler)"


@dataclass(frozen=True)
class LDMConfig:
    """The recipe's autoencoder, latent UNet, diffusion and training hyper-parameters (in the model card)."""

    name: str = "ldm"
    seed: int = 4
    # images: 28×28 grayscale Fashion-MNIST, or (training_crops > 0) colour crops of the training photos
    image_size: int = 28
    channels: int = 1
    training_crops: int = 0
    # stage 1: AutoencoderKL (or, with autoencoder_from, that recipe's trained autoencoder)
    autoencoder_from: str | None = None
    ae_block_out_channels: tuple[int, ...] = (16, 32, 32)
    ae_layers_per_block: int = 1
    ae_norm_num_groups: int = 8
    ae_mid_attention: bool = True
    latent_channels: int = 4
    ae_steps: int = 1500
    ae_batch_size: int = 64
    #: Train on random ``ae_patch``×``ae_patch`` sub-crops (cheaper steps; the autoencoder is convolutional); 0: whole.
    ae_patch: int = 0
    #: Decode the posterior mean in training instead of a posterior sample (what verification decodes).
    ae_posterior_mean: bool = False
    ae_lr: float = 1e-3
    ae_warmup: int = 100
    kl_weight: float = 1e-4
    # stage 2: latent UNet2DModel (single resolution)
    block_out_channels: tuple[int, ...] = (64,)
    down_block_types: tuple[str, ...] = ("DownBlock2D",)
    up_block_types: tuple[str, ...] = ("UpBlock2D",)
    layers_per_block: int = 1
    norm_num_groups: int = 16
    attention_head_dim: int = 32
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    num_inference_steps: int = 10
    timestep_spacing: str = "trailing"
    steps: int = 2500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    #: Ship the weights in float16 (half the bytes; the model is those rounded weights, run in float32).
    half: bool = False

    @property
    def latent_size(self) -> int:
        """Side of the latent: the image side over the autoencoder's downsampling factor."""
        return self.image_size // 2 ** (len(self.ae_block_out_channels) - 1)


def weight_files(cfg: LDMConfig) -> list[str]:
    """The autoencoder's and the latent UNet's weight files, relative to a weights folder."""
    return [
        f"{cfg.name}/vae/diffusion_pytorch_model.safetensors",
        f"{cfg.name}/unet/diffusion_pytorch_model.safetensors",
    ]


def load_float32(model_class, folder: Path, device: str | torch.device = "cpu"):
    """A diffusers model folder (float32 or float16 weights) as a float32 model in eval mode on ``device``."""
    return model_class.from_pretrained(folder, low_cpu_mem_usage=False, torch_dtype=torch.float32).to(device).eval()


def load_components(cfg: LDMConfig, weights_dir: Path, device: str | torch.device = "cpu"):
    """The diffusers ``AutoencoderKL``, latent ``UNet2DModel`` (eval mode, on ``device``) and ``DDIMScheduler``."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DModel

    root = Path(weights_dir) / cfg.name
    vae = load_float32(AutoencoderKL, root / "vae", device)
    unet = load_float32(UNet2DModel, root / "unet", device)
    scheduler = DDIMScheduler.from_pretrained(root / "scheduler")
    return vae, unet, scheduler


def load(cfg: LDMConfig, weights_dir: Path, device: str | torch.device = "cpu") -> AutoencoderGenerator:
    """The autoencoder decoder as verification inverts it; its samples come from the latent diffusion model."""
    from imgorigin.verification.generators.autoencoder import AutoencoderGenerator, LatentDiffusion

    vae, unet, scheduler = load_components(cfg, weights_dir, device)
    sampler = LatentDiffusion(unet, scheduler, cfg.num_inference_steps)
    return AutoencoderGenerator(vae, id=f"zoo:{cfg.name}", latent_sampler=sampler).to(device)
