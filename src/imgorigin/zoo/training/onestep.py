"""Training of ``ddpm-one-step``: regression of a one-evaluation student onto the teacher's DDIM outputs."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from imgorigin.runtime import resolve_device
from imgorigin.zoo.onestep import OneStepConfig, OneStepStudent
from imgorigin.zoo.training.common import (
    EMA,
    Log,
    Timer,
    count_parameters,
    default_log,
    save_diffusers,
    seed_everything,
    warmup_cosine,
)


@torch.no_grad()
def teacher_pairs(teacher, n: int, rng: torch.Generator, device: torch.device, batch_size: int = 250):
    """``n`` noises x_T ~ N(0, I) and what the teacher's deterministic chain makes of them, in [-1, 1]."""
    shape = teacher.latent_shape
    noise = torch.randn((n, *shape), generator=rng)
    images = torch.cat([teacher.decode(noise[i : i + batch_size].to(device)).cpu() for i in range(0, n, batch_size)])
    return noise, images * 2 - 1


def train(
    cfg: OneStepConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    images: torch.Tensor | None = None,
    max_steps: int | None = None,
    log: Log = default_log,
) -> dict:
    """Distil the teacher (the shipped zoo ``cfg.teacher``) into ``out_dir / NAME / unet``; returns stats.

    The student starts from the teacher's weights. ``max_steps`` caps the steps and the teacher pairs (a quick
    run makes ``batch_size × max_steps`` pairs at most); ``images`` is not used (the data are teacher samples).
    """
    from imgorigin import zoo

    if images is not None:
        raise ValueError("ddpm-one-step learns from its teacher's samples; it takes no training images")
    device = resolve_device(device)
    rng = seed_everything(cfg.seed)
    teacher = zoo.load(cfg.teacher, device=device)
    steps = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    n_pairs = cfg.pairs if max_steps is None else min(cfg.pairs, cfg.batch_size * steps)
    timer = Timer()
    noise, targets = teacher_pairs(teacher, n_pairs, rng, device)
    pair_seconds = timer.seconds
    log(f"[{cfg.name}] {n_pairs} teacher pairs in {pair_seconds:.0f}s")
    student = OneStepStudent(copy.deepcopy(teacher.unet).train().requires_grad_(True), cfg.timestep).to(device)
    averaged, loss = distil(student, noise, targets, cfg, rng, steps=steps, log=log, timer=timer)
    save_diffusers(averaged.unet.to("cpu"), Path(out_dir) / cfg.name / "unet")
    return {
        "steps": steps,
        "teacher_pairs": n_pairs,
        "teacher_seconds": pair_seconds,
        "epochs": steps * cfg.batch_size / n_pairs,
        "seconds": timer.seconds,
        "final_loss": loss,
        "parameters": count_parameters(student),
        "device": str(device),
    }


def distil(
    student: torch.nn.Module,
    noise: torch.Tensor,
    targets: torch.Tensor,
    cfg: OneStepConfig,
    rng: torch.Generator,
    steps: int | None = None,
    log: Log = default_log,
    timer: Timer | None = None,
) -> tuple[torch.nn.Module, float]:
    """Regress ``student(noise)`` onto the teacher's ``targets`` with the recipe's optimiser (AdamW, warm-up + cosine,
    gradient clipping, batches drawn with ``rng``); returns the weights' moving average and the smoothed last loss.

    ``steps`` defaults to ``cfg.steps``. Any student architecture can be distilled this way (the narrow-range
    students of ``benchmarks/one_step_bottleneck.py`` are)."""
    steps = cfg.steps if steps is None else steps
    timer = timer or Timer()
    device = next(student.parameters()).device
    ema = EMA(student, cfg.ema_decay)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, cfg.warmup))
    running = 0.0
    for step in range(steps):
        idx = torch.randint(0, len(noise), (cfg.batch_size,), generator=rng)
        loss = F.mse_loss(student(noise[idx].to(device)), targets[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        ema.update(student)
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 100 == 0 or step == steps - 1:
            log(f"[{cfg.name}] step {step + 1}/{steps} loss {running:.5f} {timer.seconds:.0f}s")
    return ema.module, running
