"""Training of ``ddpm`` (ε-prediction DDPM objective, EMA weights) and the diffusion loop ``ldm`` shares."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from imgorigin.runtime import resolve_device
from imgorigin.zoo.ddpm import DDPMConfig
from imgorigin.zoo.training.common import (
    EMA,
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


def build_unet(cfg: DDPMConfig):
    """A freshly initialised pixel ``UNet2DModel`` of the recipe."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        layers_per_block=cfg.layers_per_block,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=tuple(cfg.down_block_types),
        up_block_types=tuple(cfg.up_block_types),
        norm_num_groups=cfg.norm_num_groups,
        attention_head_dim=cfg.attention_head_dim,
    )


def build_train_scheduler(num_train_timesteps: int, beta_schedule: str, beta_start: float, beta_end: float):
    """The ε-prediction ``DDPMScheduler`` that noises training images."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type="epsilon",
    )


def build_ddim_scheduler(
    num_train_timesteps: int,
    beta_schedule: str,
    beta_start: float,
    beta_end: float,
    timestep_spacing: str,
    clip_sample: bool = True,
):
    """The deterministic ``DDIMScheduler`` saved with the weights (what sampling and verification run)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type="epsilon",
        clip_sample=clip_sample,
        clip_sample_range=1.0,
        set_alpha_to_one=True,
        timestep_spacing=timestep_spacing,
    )


def diffusion_loss(unet, scheduler, x0: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """ε-prediction MSE at uniformly drawn timesteps (noise and timesteps drawn from ``rng`` on the CPU)."""
    b = x0.shape[0]
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=rng)
    noise = torch.randn(x0.shape, generator=rng)
    t, noise = t.to(x0.device), noise.to(x0.device)
    xt = scheduler.add_noise(x0, noise, t)
    return F.mse_loss(unet(xt, t).sample, noise)


def train_diffusion(
    unet, scheduler, data: torch.Tensor, cfg, device: torch.device, rng: torch.Generator, steps: int, log: Log, tag: str
) -> tuple[EMA, dict]:
    """The shared diffusion training loop (pixel ``ddpm`` and the latent model of ``ldm``)."""
    unet.to(device).train()
    ema = EMA(unet, cfg.ema_decay)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, cfg.warmup))
    batches = minibatches(data, cfg.batch_size, rng, device)
    timer, running = Timer(), 0.0
    for step in range(steps):
        loss = diffusion_loss(unet, scheduler, next(batches), rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        ema.update(unet)
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 100 == 0 or step == steps - 1:
            log(
                f"[{tag}] step {step + 1}/{steps} loss {running:.4f} lr {sched.get_last_lr()[0]:.2e} "
                f"{timer.seconds:.0f}s"
            )
    stats = {
        "steps": steps,
        "epochs": steps * cfg.batch_size / data.shape[0],
        "seconds": timer.seconds,
        "final_loss": running,
    }
    return ema, stats


def train(
    cfg: DDPMConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    images: torch.Tensor | None = None,
    max_steps: int | None = None,
    log: Log = default_log,
) -> dict:
    """Train the recipe and write the diffusers folders under ``out_dir / cfg.name``; returns training stats."""
    device = resolve_device(device)
    rng = seed_everything(cfg.seed)
    data = load_training_images(images) * 2 - 1
    unet = build_unet(cfg)
    train_sched = build_train_scheduler(cfg.num_train_timesteps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)
    steps = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    ema, stats = train_diffusion(unet, train_sched, data, cfg, device, rng, steps, log, cfg.name)
    save(cfg, ema.module, Path(out_dir))
    stats.update(parameters=count_parameters(unet), device=str(device))
    return stats


def save(cfg: DDPMConfig, unet, out_dir: Path) -> None:
    """Write ``out_dir / NAME``: ``unet/``, ``scheduler/`` (DDIM) and ``model_index.json`` of a ``DDIMPipeline``."""
    import diffusers

    root = out_dir / cfg.name
    save_diffusers(unet.to("cpu"), root / "unet")
    ddim = build_ddim_scheduler(
        cfg.num_train_timesteps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end, cfg.timestep_spacing
    )
    ddim.save_pretrained(root / "scheduler")
    index = {
        "_class_name": "DDIMPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "unet": ["diffusers", "UNet2DModel"],
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
