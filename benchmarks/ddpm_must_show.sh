#!/usr/bin/env bash
# Issue 16's ddpm check end to end through the CLI: `verify zoo:ddpm` with the shipped calibration on 100 fresh
# samples, 100 Fashion-MNIST test images and 100 images of four other zoo generators (plus the distilled student
# ddpm-one-step as its own group); prints the wall time, AUROC and acceptance rates at alpha = 0.05.
# Usage: benchmarks/ddpm_must_show.sh [WORKDIR]   (default: runs/ddpm-must-show)
set -euo pipefail
work=${1:-runs/ddpm-must-show}
rm -rf "$work"
mkdir -p "$work"
python benchmarks/ddpm_must_show.py prepare "$work"
source "$(dirname "$0")/timed.sh"
timed v imgorigin verify zoo:ddpm "$work/members" "$work/real" "$work/others" "$work/student" \
  --output "$work/verify.jsonl" --cache-dir "$work/cache"
python benchmarks/ddpm_must_show.py summarise "$work" "$v"
