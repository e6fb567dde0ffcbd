"""Data for the two-stage acceptance check: known sources, fresh test images and three unseen generators.

Known (fitted and bound): real + dcgan, dcgan-twin, wgangp, vae, ldm. Unknown: the shipped ddpm (never
fitted) and two generators trained here from the zoo recipes with other seeds and 1500 steps, so that no
classifier or calibration has seen them: vae-seed11 and dcgan-seed7 (a third DCGAN sibling: the hard case).
Usage: python benchmarks/two_stage_must_show.py WORKDIR
Images per source: N_TRAIN (60 per generator), N_TRAIN_REAL (300), N_TEST (40) from the environment; the unseen
generators are trained into WORKDIR/unseen, or taken from $UNSEEN_FROM/unseen when that holds them.
"""

import dataclasses
import os
import sys
from pathlib import Path

from imgorigin import zoo
from imgorigin.images import quantize_8bit, save_png
from imgorigin.zoo import data, dcgan, vae
from imgorigin.zoo.training import dcgan as dcgan_training
from imgorigin.zoo.training import vae as vae_training

KNOWN = ("dcgan", "dcgan-twin", "wgangp", "vae", "ldm")
N_TRAIN = int(os.environ.get("N_TRAIN", 60))
N_TRAIN_REAL = int(os.environ.get("N_TRAIN_REAL", 300))
N_TEST = int(os.environ.get("N_TEST", 40))


def write(images, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        save_png(image, folder / f"{i:03d}.png")


def unseen_generators(work: Path) -> dict:
    recipes = {
        "vae-seed11": (vae, vae_training, vae.VAEConfig(), 11),
        "dcgan-seed7": (dcgan, dcgan_training, dcgan.DCGANConfig(), 7),
    }
    gens = {}
    for name, (module, training, base, seed) in recipes.items():
        cfg = dataclasses.replace(base, seed=seed, steps=1500)
        weights = work / "unseen" / name
        shared = Path(os.environ.get("UNSEEN_FROM", work)) / "unseen" / name
        if (shared / cfg.name).is_dir():
            weights = shared
        elif not (weights / cfg.name).is_dir():
            training.train(cfg, weights)
        gens[name] = module.load(cfg, weights)
    return gens


def main(work: Path) -> None:
    real = data.test_images()
    write(real[2000 : 2000 + N_TRAIN_REAL], work / "train" / "real")
    write(real[3000 : 3000 + N_TEST], work / "test" / "real")
    for name in KNOWN:
        write(quantize_8bit(zoo.sample(name, N_TRAIN, seed=4100)), work / "train" / name)
        write(quantize_8bit(zoo.sample(name, N_TEST, seed=4200)), work / "test" / name)
    write(quantize_8bit(zoo.sample("ddpm", N_TEST, seed=4300)), work / "unknown" / "ddpm")
    for name, gen in unseen_generators(work).items():
        write(quantize_8bit(gen.sample(N_TEST, seed=4400)), work / "unknown" / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
