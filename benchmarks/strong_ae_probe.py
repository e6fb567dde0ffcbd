"""How fast a small diffusers ``AutoencoderKL`` reaches issue 15's "strong autoencoder" bar (PSNR >= 35 dB on
held-out real crops) on this machine: the layout choice for the colour zoo's strong-autoencoder latent models.

Trains on random 32x32 crops of the training photos (optionally on random ``--patch`` sub-crops of them, which
costs less per step; the network is fully convolutional), loss L1 + MSE + a tiny KL term, AdamW with the zoo's warm-up
and cosine decay; every ``--every`` steps prints the mean per-image PSNR of 8-bit-rounded reconstructions of 200
held-out crops (photos never used for training) and of 200 training crops, and the wall time.

    python benchmarks/strong_ae_probe.py --blocks 32 --latent-channels 4 --steps 1000 --lr 3e-3 --patch 16
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from imgorigin.images import quantize_8bit
from imgorigin.metrics import psnr
from imgorigin.zoo.photos import random_crops
from imgorigin.zoo.training.common import warmup_cosine


def channel_list(text: str) -> tuple[int, ...]:
    """``--blocks``: comma-separated positive channel counts."""
    try:
        blocks = tuple(int(c) for c in text.split(","))
    except ValueError:
        blocks = ()
    if not blocks or min(blocks) < 8 or any(c % 8 for c in blocks):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of multiples of 8 (GroupNorm of 8)")
    return blocks


def patch_size(text: str) -> int:
    """``--patch``: a side between 8 and 32."""
    if not text.isdigit() or not 8 <= int(text) <= 32:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer between 8 and 32")
    return int(text)


@torch.no_grad()
def mean_psnr(vae: AutoencoderKL, x01: torch.Tensor) -> float:
    """Mean per-image PSNR (dB) of the 8-bit-rounded posterior-mean reconstructions of ``x01`` (in [0, 1])."""
    vae.eval()
    rec = vae.decode(vae.encode(x01 * 2 - 1).latent_dist.mean).sample / 2 + 0.5
    vae.train()
    return float(psnr(quantize_8bit(rec.clamp(0, 1)).numpy(), x01.numpy()).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--blocks", type=channel_list, default=(32,), help="block_out_channels, comma-separated (n blocks: f = 2^(n-1))"
    )
    ap.add_argument("--latent-channels", type=int, default=4)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--patch", type=patch_size, default=16, help="train on random patch x patch sub-crops (32: whole)")
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-mid-attention", action="store_true", help="no self-attention in the mid blocks")
    ap.add_argument("--posterior-mean", action="store_true", help="decode the posterior mean in training (no sample)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rng = torch.Generator().manual_seed(args.seed)
    train, held = random_crops("train", 20_000, 32, args.seed), random_crops("heldout", 200, 32, args.seed + 1)
    blocks = args.blocks
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        block_out_channels=blocks,
        layers_per_block=1,
        latent_channels=args.latent_channels,
        norm_num_groups=8,
        sample_size=32,
        mid_block_add_attention=not args.no_mid_attention,
    )
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, args.steps, 100))
    start = time.perf_counter()
    for step in range(args.steps):
        x = train[torch.randint(0, len(train), (args.batch_size,), generator=rng)] * 2 - 1
        if args.patch < 32:
            i, j = torch.randint(0, 33 - args.patch, (2,), generator=rng).tolist()
            x = x[:, :, i : i + args.patch, j : j + args.patch]
        post = vae.encode(x).latent_dist
        z = post.mean if args.posterior_mean else post.mean + post.std * torch.randn(post.mean.shape, generator=rng)
        rec = vae.decode(z).sample
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-6 * post.kl().mean() / x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % args.every == 0 or step == args.steps - 1:
            row = {
                "step": step + 1,
                "loss": round(loss.item(), 4),
                "heldout_psnr": round(mean_psnr(vae, held), 2),
                "train_psnr": round(mean_psnr(vae, train[:200]), 2),
                "seconds": round(time.perf_counter() - start, 1),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
