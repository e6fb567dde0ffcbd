#!/usr/bin/env bash
# The two-stage acceptance check: fit on real + five zoo generators, all five bound to their zoo models, then
# `evaluate` on fresh samples, real test images and three unseen generators, without and with --confirm
# (and with --confirm --min-probability 0.01).
# Usage: benchmarks/two_stage_must_show.sh [WORKDIR]   (default: runs/two-stage-must-show)
# Environment (defaults: the original check): BACKBONE (efficientnet-lite0), LAYER (6), REJECTION (knn),
# N_TRAIN / N_TRAIN_REAL / N_TEST (60 / 300 / 40 images per source), FEATURES_ONLY=1 (skip the --confirm runs).
# The unseen generators' weights are trained once per WORKDIR (or taken from $UNSEEN_FROM/unseen when set).
set -euo pipefail
work=${1:-runs/two-stage-must-show}
backbone=${BACKBONE:-efficientnet-lite0}
python benchmarks/two_stage_must_show.py "$work"
imgorigin fit "$work/train" --out "$work/clf" --backbone "$backbone" --layer "${LAYER:-6}" \
  --rejection "${REJECTION:-knn}" --cache-dir "$work/cache" \
  --bind dcgan=zoo:dcgan --bind dcgan-twin=zoo:dcgan-twin --bind wgangp=zoo:wgangp --bind vae=zoo:vae \
  --bind ldm=zoo:ldm
unknown=("$work"/unknown/*)
imgorigin evaluate "$work/clf" --known "$work/test" --unknown "${unknown[@]}" --cache-dir "$work/cache" \
  --output "$work/features.json" --report "$work/report-features"
if [[ "${FEATURES_ONLY:-0}" == 1 ]]; then exit 0; fi
imgorigin evaluate "$work/clf" --known "$work/test" --unknown "${unknown[@]}" --cache-dir "$work/cache" \
  --confirm --output "$work/two-stage.json" --report "$work/report-two-stage"
# the same with the candidates the features rule out skipped (verification scores cached by the run above)
imgorigin evaluate "$work/clf" --known "$work/test" --unknown "${unknown[@]}" --cache-dir "$work/cache" \
  --confirm --min-probability 0.01 --output "$work/two-stage-min-probability.json"
