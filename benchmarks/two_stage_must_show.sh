#!/usr/bin/env bash
# The two-stage acceptance check: fit on real + five zoo generators, all five bound to their zoo models, then
# `evaluate` on fresh samples, real test images and three unseen generators, without and with --confirm
# (and with --confirm --min-probability 0.01).
# Usage: benchmarks/two_stage_must_show.sh [WORKDIR]   (default: runs/two-stage-must-show)
set -euo pipefail
work=${1:-runs/two-stage-must-show}
python benchmarks/two_stage_must_show.py "$work"
imgorigin fit "$work/train" --out "$work/clf" --layer 6 --rejection knn --cache-dir "$work/cache" \
  --bind dcgan=zoo:dcgan --bind dcgan-twin=zoo:dcgan-twin --bind wgangp=zoo:wgangp --bind vae=zoo:vae \
  --bind ldm=zoo:ldm
unknown=("$work"/unknown/*)
imgorigin evaluate "$work/clf" --known "$work/test" --unknown "${unknown[@]}" --cache-dir "$work/cache" \
  --output "$work/features.json" --report "$work/report-features"
imgorigin evaluate "$work/clf" --known "$work/test" --unknown "${unknown[@]}" --cache-dir "$work/cache" \
  --confirm --output "$work/two-stage.json" --report "$work/report-two-stage"
# the same with the candidates the features rule out skipped (verification scores cached by the run above)
imgorigin evaluate "$work/clf" --known "$work/test" --unknown "${unknown[@]}" --cache-dir "$work/cache" \
  --confirm --min-probability 0.01 --output "$work/two-stage-min-probability.json"
