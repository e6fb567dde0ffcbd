#!/usr/bin/env bash
# The verification issue's acceptance check, end to end through the CLI on TorchScript files:
# export the zoo dcgan generator and the zoo vae decoder (no encoder) to TorchScript, save 100 of each model's
# own samples as PNG, then `calibrate` (100 samples) and `verify` 100 members + 100 real Fashion-MNIST test
# images + 100 images of two other generators; prints wall time of each command, AUROC and acceptance rates.
# Usage: benchmarks/torchscript_must_show.sh [WORKDIR]   (default: runs/torchscript-must-show)
set -euo pipefail
work=${1:-runs/torchscript-must-show}
rm -rf "$work/cache" "$work"/*.jsonl  # cold: no cached scores, no resumed records
mkdir -p "$work"
python benchmarks/torchscript_must_show.py prepare "$work"
source "$(dirname "$0")/timed.sh"
for m in dcgan vae; do
  timed c imgorigin calibrate "$work/$m.pt" --samples 100 --out "$work/$m.cal.json" --cache-dir "$work/cache"
  timed v imgorigin verify "$work/$m.pt" "$work/$m/members" "$work/real" "$work/$m/others" \
    --calibration "$work/$m.cal.json" --output "$work/$m.jsonl" --cache-dir "$work/cache"
  python benchmarks/torchscript_must_show.py summarise "$work" "$m" "$c" "$v"
done
