"""Training of ``vae``: Bernoulli log-likelihood + KL to N(0, I), encoder and decoder together."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from imgorigin.runtime import resolve_device
from imgorigin.zoo.training.common import (
    Log,
    Timer,
    count_parameters,
    default_log,
    load_training_images,
    minibatches,
    save_weights,
    seed_everything,
    warmup_cosine,
)
from imgorigin.zoo.vae import VAEConfig, VAEDecoder, VAEEncoder, architecture


def train(
    cfg: VAEConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    images: torch.Tensor | None = None,
    max_steps: int | None = None,
    log: Log = default_log,
) -> dict:
    """Train the recipe; writes ``decoder.safetensors`` and ``encoder.safetensors`` under ``out_dir / NAME``."""

    device = resolve_device(device)
    rng = seed_everything(cfg.seed)
    data = load_training_images(images, cfg)
    enc = VAEEncoder(*architecture(cfg)).to(device).train()
    dec = VAEDecoder(*architecture(cfg)).to(device).train()
    params = [*enc.parameters(), *dec.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, cfg.warmup))
    batches = minibatches(data, cfg.batch_size, rng, device)
    timer = Timer()
    for step in range(steps):
        x = next(batches)
        mu, logvar = enc(x)
        z = mu + torch.randn(mu.shape, generator=rng).to(device) * (0.5 * logvar).exp()
        rec = F.binary_cross_entropy_with_logits(dec.logits(z), x, reduction="sum") / x.shape[0]
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / x.shape[0]
        loss = rec + kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            log(f"[{cfg.name}] step {step + 1}/{steps} rec {rec.item():.1f} kl {kl.item():.1f} {timer.seconds:.0f}s")
    seconds = timer.seconds
    root = Path(out_dir) / cfg.name
    root.mkdir(parents=True, exist_ok=True)
    enc.to("cpu")
    dec.to("cpu")
    save_weights(dec, root / "decoder.safetensors", half=cfg.half)
    save_weights(enc, root / "encoder.safetensors", half=cfg.half)
    return {
        "steps": steps,
        "epochs": steps * cfg.batch_size / data.shape[0],
        "seconds": seconds,
        "parameters": count_parameters(dec),
        "encoder_parameters": count_parameters(enc),
        "device": str(device),
    }
