"""Training of the ``ldm`` recipes: the AutoencoderKL (stage 1, or another recipe's, reused), its latent scaling
factor, then latent diffusion (stage 2)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from imgorigin.errors import ImgoriginError
from imgorigin.runtime import resolve_device
from imgorigin.zoo.ldm import LDMConfig, load_float32
from imgorigin.zoo.training.common import (
    Log,
    Timer,
    count_parameters,
    default_log,
    load_training_images,
    minibatches,
    save_diffusers,
    seed_everything,
    warmup_cosine,
)
from imgorigin.zoo.training.ddpm import build_ddim_scheduler, build_train_scheduler, train_diffusion


def build_vae(cfg: LDMConfig):
    """A freshly initialised ``AutoencoderKL`` of the recipe (scaling factor set after stage 1)."""
    from diffusers import AutoencoderKL

    n = len(cfg.ae_block_out_channels)
    return AutoencoderKL(
        in_channels=cfg.channels,
        out_channels=cfg.channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.ae_block_out_channels),
        layers_per_block=cfg.ae_layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.ae_norm_num_groups,
        sample_size=cfg.image_size,
        scaling_factor=1.0,
        mid_block_add_attention=cfg.ae_mid_attention,
    )


def build_latent_unet(cfg: LDMConfig):
    """A freshly initialised latent ``UNet2DModel`` of the recipe."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=cfg.latent_size,
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
    """Stage 1: the autoencoder on images in [-1, 1]; returns it in eval mode and its training stats."""
    vae = build_vae(cfg).to(device).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.ae_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, cfg.ae_warmup))
    batches = minibatches(data01, cfg.ae_batch_size, rng, device)
    timer = Timer()
    for step in range(steps):
        x = next(batches) * 2 - 1
        if cfg.ae_patch:
            i, j = torch.randint(0, x.shape[-1] - cfg.ae_patch + 1, (2,), generator=rng).tolist()
            x = x[:, :, i : i + cfg.ae_patch, j : j + cfg.ae_patch]
        post = vae.encode(x).latent_dist
        z = post.mean
        if not cfg.ae_posterior_mean:
            z = z + post.std * torch.randn(post.mean.shape, generator=rng).to(device)
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
    data01 = load_training_images(images, cfg)
    total = Timer()
    if cfg.autoencoder_from:
        vae, ae_stats = reused_autoencoder(cfg.autoencoder_from, Path(out_dir), device)
        log(f"[{cfg.name}] the autoencoder of {cfg.autoencoder_from}: {ae_stats}")
    else:
        ae_steps = cfg.ae_steps if max_steps is None else min(cfg.ae_steps, max_steps)
        vae, ae_stats = train_autoencoder(cfg, data01, device, rng, ae_steps, log)
    t = Timer()
    means = encode_means(vae, data01, device)
    if not cfg.autoencoder_from:
        vae.register_to_config(scaling_factor=float(1.0 / means.std()))
    scaling = float(vae.config.scaling_factor)
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


def reused_autoencoder(name: str, out_dir: Path, device: torch.device):
    """The trained autoencoder of recipe ``name`` in ``out_dir`` (with its scaling factor) and its training stats."""
    from diffusers import AutoencoderKL

    root = out_dir / name
    if not (root / "vae" / "config.json").is_file():
        raise ImgoriginError(
            f"this recipe reuses the autoencoder of {name!r}, which is not in {out_dir}: train {name!r} into the "
            "same folder first"
        )
    vae = load_float32(AutoencoderKL, root / "vae", device)
    return vae, {"from": name, **training_record(root).get("training", {}).get("autoencoder", {})}


def training_record(root: Path) -> dict:
    """A trained model folder's training record: its ``training.json`` (what :func:`imgorigin.zoo.train` writes)
    or, in a shipped folder, the record kept in its ``card.json``; empty when neither is there."""
    if (root / "training.json").is_file():
        return json.loads((root / "training.json").read_text())
    if (root / "card.json").is_file():
        return json.loads((root / "card.json").read_text()).get("training") or {}
    return {}


def save(cfg: LDMConfig, vae, unet, out_dir: Path) -> None:
    """Write ``out_dir / NAME``: ``vae/``, ``unet/`` and ``scheduler/`` (DDIM, no x_0 clipping); float16 weights
    when the recipe says ``half``."""
    root = out_dir / cfg.name
    dtype = torch.float16 if cfg.half else torch.float32
    save_diffusers(vae.to("cpu", dtype), root / "vae")
    save_diffusers(unet.to("cpu", dtype), root / "unet")
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
