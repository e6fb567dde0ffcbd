#!/usr/bin/env bash
# Issue 15's colour-GAN check end to end through the CLI: the zoo dcgan-rgb exported to TorchScript stands in for a
# third-party 64x64 RGB DCGAN; `calibrate` with 100 samples (the learned initialiser is trained there), then
# `verify` 100 of its saved PNG samples against 100 held-out photo crops and 100 other generators' images; prints
# the wall time of each command, AUROC and acceptance rates at alpha = 0.05.
# Usage: benchmarks/colour_gan_must_show.sh [WORKDIR]   (default: runs/colour-gan-must-show)
set -euo pipefail
work=${1:-runs/colour-gan-must-show}
rm -rf "$work/cache" "$work"/*.jsonl  # cold: no cached scores, no resumed records
mkdir -p "$work"
python benchmarks/colour_gan_must_show.py prepare "$work"
source "$(dirname "$0")/timed.sh"
timed c imgorigin calibrate "$work/dcgan-rgb.pt" --samples 100 --out "$work/dcgan-rgb.cal.json" --cache-dir "$work/cache"
timed v imgorigin verify "$work/dcgan-rgb.pt" "$work/members" "$work/real" "$work/others" \
  --calibration "$work/dcgan-rgb.cal.json" --output "$work/verify.jsonl" --cache-dir "$work/cache"
python benchmarks/colour_gan_must_show.py summarise "$work" "$c" "$v"
