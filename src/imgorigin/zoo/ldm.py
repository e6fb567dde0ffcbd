"""``ldm``: latent diffusion — a small diffusers ``AutoencoderKL`` (28×28×1 → 7×7×4) plus a small
``UNet2DModel`` trained with the DDPM objective in its (scaled) latent space, sampled by deterministic DDIM.

For verification the generator is the AUTOENCODER DECODER (scaled latent [4, 7, 7] → image), initialised from
the encoder's posterior mean, as LatentTracer does for Stable Diffusion. For sampling, latents come from the
latent diffusion model (x_T ~ N(0, I) → DDIM) and are decoded.

Stage 1 (autoencoder): L1 + MSE reconstruction on images in [-1, 1] + a small KL term; the scaling factor
(1 / std of the posterior-mean latents of the training set) is stored in the VAE config, as for SD.
Stage 2 (latent diffusion): ε-prediction, 1000-step linear β schedule, on the scaled posterior means; a
single-resolution UNet (7×7 latents do not halve evenly) with a self-attention mid block.

Shipped as diffusers folders under ``weights/ldm/``: ``vae`` (``AutoencoderKL``), ``unet`` (latent
``UNet2DModel``) and ``scheduler`` (``DDIMScheduler``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from imgorigin.runtime import resolve_device
from imgorigin.zoo.common import (
    Log,
    Timer,
    count_parameters,
    default_log,
    load_training_images,
    minibatches,
    seed_everything,
    warmup_cosine,
)
from imgorigin.zoo.ddpm import build_ddim_scheduler, build_train_scheduler, ddim_sample, train_diffusion

FAMILY = "latent diffusion (AutoencoderKL + latent DDPM, DDIM sampler)"


@dataclass(frozen=True)
class LDMConfig:
    name: str = "ldm"
    seed: int = 4
    # stage 1: AutoencoderKL
    ae_block_out_channels: tuple[int, ...] = (16, 32, 32)
    ae_layers_per_block: int = 1
    ae_norm_num_groups: int = 8
    latent_channels: int = 4
    ae_steps: int = 1500
    ae_batch_size: int = 64
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


def build_vae(cfg: LDMConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.ae_block_out_channels)
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.ae_block_out_channels),
        layers_per_block=cfg.ae_layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.ae_norm_num_groups,
        sample_size=28,
        scaling_factor=1.0,
    )


def build_latent_unet(cfg: LDMConfig):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=28 // 2 ** (len(cfg.ae_block_out_channels) - 1),
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        layers_per_block=cfg.layers_per_block,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=tuple(cfg.down_block_types),
        up_block_types=tuple(cfg.up_block_types),
        norm_num_groups=cfg.norm_num_groups,
        attention_head_dim=cfg.attention_head_dim,
    )


@torch.no_grad()
def encode_means(vae, images01: torch.Tensor, device: torch.device, batch_size: int = 500) -> torch.Tensor:
    """Posterior means (unscaled) of images in [0, 1], on the CPU."""
    vae.eval()
    out = [
        vae.encode(images01[i : i + batch_size].to(device) * 2 - 1).latent_dist.mean.cpu()
        for i in range(0, images01.shape[0], batch_size)
    ]
    return torch.cat(out)


def train_autoencoder(
    cfg: LDMConfig, data01: torch.Tensor, device: torch.device, rng: torch.Generator, steps: int, log: Log
):
    vae = build_vae(cfg).to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.ae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, cfg.ae_warmup))
    batches = minibatches(data01, cfg.ae_batch_size, rng, device)
    timer = Timer()
    for step in range(steps):
        x = next(batches) * 2 - 1
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=rng).to(device)
        rec = vae.decode(z).sample
        rec_loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        kl = post.kl().mean() / x[0].numel()
        loss = rec_loss + cfg.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            log(
                f"[{cfg.name}/vae] step {step + 1}/{steps} rec {rec_loss.item():.4f} kl/px {kl.item():.3f} "
                f"{timer.seconds:.0f}s"
            )
    vae.eval()
    return vae, {"steps": steps, "epochs": steps * cfg.ae_batch_size / data01.shape[0], "seconds": timer.seconds}


def train(
    cfg: LDMConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    images: torch.Tensor | None = None,
    max_steps: int | None = None,
    log: Log = default_log,
) -> dict:
    """Train both stages; writes the diffusers folders under ``out_dir / NAME``; returns training stats."""
    device = resolve_device(device)
    rng = seed_everything(cfg.seed)
    data01 = load_training_images(images)
    total = Timer()
    ae_steps = cfg.ae_steps if max_steps is None else min(cfg.ae_steps, max_steps)
    vae, ae_stats = train_autoencoder(cfg, data01, device, rng, ae_steps, log)
    t = Timer()
    means = encode_means(vae, data01, device)
    scaling = float(1.0 / means.std())
    vae.register_to_config(scaling_factor=scaling)
    latents = means * scaling
    log(f"[{cfg.name}] encoded {means.shape[0]} training images in {t.seconds:.0f}s; scaling factor {scaling:.4f}")
    unet = build_latent_unet(cfg)
    train_sched = build_train_scheduler(cfg.num_train_timesteps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)
    steps = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    ema, dm_stats = train_diffusion(unet, train_sched, latents, cfg, device, rng, steps, log, f"{cfg.name}/unet")
    save(cfg, vae, ema.module, Path(out_dir))
    return {
        "steps": steps,
        "epochs": dm_stats["epochs"],
        "seconds": total.seconds,
        "autoencoder": ae_stats,
        "latent_diffusion": {k: v for k, v in dm_stats.items()},
        "scaling_factor": scaling,
        "parameters": count_parameters(vae.decoder, vae.post_quant_conv),
        "autoencoder_parameters": count_parameters(vae),
        "latent_unet_parameters": count_parameters(unet),
        "device": str(device),
    }


def save(cfg: LDMConfig, vae, unet, out_dir: Path) -> None:
    root = out_dir / cfg.name
    vae.to("cpu").save_pretrained(root / "vae", safe_serialization=True)
    unet.to("cpu").save_pretrained(root / "unet", safe_serialization=True)
    # no clipping of the predicted x_0: scaled latents are not confined to [-1, 1] (as for Stable Diffusion)
    ddim = build_ddim_scheduler(
        cfg.num_train_timesteps,
        cfg.beta_schedule,
        cfg.beta_start,
        cfg.beta_end,
        cfg.timestep_spacing,
        clip_sample=False,
    )
    ddim.save_pretrained(root / "scheduler")


def weight_files(cfg: LDMConfig) -> list[str]:
    return [
        f"{cfg.name}/vae/diffusion_pytorch_model.safetensors",
        f"{cfg.name}/unet/diffusion_pytorch_model.safetensors",
    ]


def load_components(cfg: LDMConfig, weights_dir: Path, device: str | torch.device = "cpu"):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DModel

    root = Path(weights_dir) / cfg.name
    vae = AutoencoderKL.from_pretrained(root / "vae", low_cpu_mem_usage=False).to(device).eval()
    unet = UNet2DModel.from_pretrained(root / "unet", low_cpu_mem_usage=False).to(device).eval()
    scheduler = DDIMScheduler.from_pretrained(root / "scheduler")
    return vae, unet, scheduler


class LatentSampler:
    """Scaled latents from the latent diffusion model: x_T ~ N(0, I) (drawn from the caller's RNG) → DDIM."""

    def __init__(self, unet, scheduler, num_inference_steps: int) -> None:
        self.unet, self.scheduler, self.num_inference_steps = unet, scheduler, num_inference_steps

    @torch.no_grad()
    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        cfg = self.unet.config
        x_t = torch.randn((n, cfg.in_channels, cfg.sample_size, cfg.sample_size), generator=generator)
        device = next(self.unet.parameters()).device
        return ddim_sample(self.unet, self.scheduler, x_t.to(device), self.num_inference_steps)


def load(cfg: LDMConfig, weights_dir: Path, device: str | torch.device = "cpu"):
    from imgorigin.verification.generators.autoencoder import AutoencoderGenerator

    vae, unet, scheduler = load_components(cfg, weights_dir, device)
    sampler = LatentSampler(unet, scheduler, cfg.num_inference_steps)
    return AutoencoderGenerator(vae, id=f"zoo:{cfg.name}", latent_sampler=sampler).to(device)
