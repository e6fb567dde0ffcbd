"""Probe: does zoo:ddpm's shipped denoising-profile calibration tell it from a DDPM of the same recipe, another seed?

Trains the zoo ddpm recipe with ``--seed`` (default 13; the shipped model is seed 3) into ``--out`` (reused when
already there; ~8 min on 2 CPU cores), then verifies 100 fresh samples of each model (seed 777) against the
shipped calibration and prints the share of each accepted at alpha = 0.05 and the AUROC between them.
Usage: python benchmarks/ddpm_sibling.py [--out runs/ddpm-sibling] [--seed 13]
"""

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from imgorigin import zoo
from imgorigin.images import quantize_8bit
from imgorigin.metrics import auroc
from imgorigin.verification import Verifier
from imgorigin.verification.calibration import Calibration
from imgorigin.zoo.calibrations import calibration_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/ddpm-sibling"))
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if not (args.out / "ddpm" / "unet").is_dir():
        recipe = zoo.get_recipe("ddpm")
        began = time.perf_counter()
        recipe.training_module.train(dataclasses.replace(recipe.config, seed=args.seed), args.out, device="cpu")
        print(f"trained the seed-{args.seed} sibling in {time.perf_counter() - began:.0f} s")
    model, sibling = zoo.load("ddpm"), zoo.load("ddpm", weights=args.out)
    verifier = Verifier(model, Calibration.load(calibration_path("ddpm")), detail_alpha=None)
    scores, accepted = {}, {}
    for name, gen in (("ddpm", model), (f"seed-{args.seed} sibling", sibling)):
        records = verifier.verify_tensors(quantize_8bit(gen.sample(100, seed=777)))
        scores[name] = np.array([r["score"] for r in records])
        accepted[name] = float(np.mean([r["verdict"] == "member" for r in records]))
    own, other = scores.values()
    print(f"accepted at alpha 0.05: {accepted}; AUROC ddpm vs sibling {auroc(-own, -other):.4f}")


if __name__ == "__main__":
    main()
