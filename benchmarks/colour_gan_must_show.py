"""Helpers of colour_gan_must_show.sh: export + sample (prepare), and metrics of one verify run (summarise).

The colour GAN check of issue 15 with the zoo ``dcgan-rgb`` standing in for the third-party 64×64 RGB DCGAN
(latent [100, 1, 1], 3.58 M parameters, the same layout): exported to TorchScript, so `imgorigin` sees only a file.
Non-members: 100 random crops of the held-out photos (never seen in training) and 100 images of other generators
(the grayscale zoo GANs and VAE, 25 each, resized to 64×64 with Lanczos and replicated to RGB, as saved PNGs) —
no second colour generator has been trained here yet, so the "other generator" group is an easy one.
"""

import json
import sys
from pathlib import Path
from typing import List  # noqa: UP035 (TorchScript needs typing.List here)

import numpy as np
import torch
from must_show_common import scored_by_group, write
from PIL import Image

from imgorigin import zoo
from imgorigin.images import quantize_8bit
from imgorigin.metrics import auroc
from imgorigin.verification import load_generator
from imgorigin.zoo.photos import random_crops

OTHERS = ("dcgan", "wgangp", "vae", "ldm")
GROUPS = ("members", "real", "others")


class TorchScriptExport(torch.nn.Module):
    """z [B, 100, 1, 1] -> image in [-1, 1] with a ``latent_shape`` attribute, as a pretrained DCGAN file has."""

    latent_shape: List[int]  # noqa: UP006

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.latent_shape = net, [100, 1, 1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def to_rgb64(images: torch.Tensor) -> torch.Tensor:
    """Grayscale [N, 1, h, w] in [0, 1] -> [N, 3, 64, 64], resized with Lanczos on the 8-bit image."""
    out = []
    for image in images:
        gray = Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).resize((64, 64), Image.LANCZOS)
        out.append(torch.from_numpy(np.asarray(gray, dtype=np.float32) / 255).expand(3, 64, 64))
    return torch.stack(out)


def prepare(work: Path) -> None:
    net = zoo.load("dcgan-rgb").modules()[0].eval()
    torch.jit.save(torch.jit.script(TorchScriptExport(net)), work / "dcgan-rgb.pt")
    exported = load_generator(str(work / "dcgan-rgb.pt"))
    write(quantize_8bit(exported.sample(100, seed=777)), work / "members")
    write(random_crops("heldout", 100, 64, seed=4242, flip=False), work / "real")
    for k, other in enumerate(OTHERS):
        write(to_rgb64(quantize_8bit(zoo.sample(other, 25, seed=31 + k))), work / "others" / other)


def summarise(work: Path, calibrate_s: str, verify_s: str) -> None:
    records, group, score, belongs = scored_by_group(work / "verify.jsonl", GROUPS)
    member = group == "members"
    calibration = json.loads((work / "dcgan-rgb.cal.json").read_text())
    print(
        json.dumps(
            {
                "model": "zoo dcgan-rgb as TorchScript (latent [100, 1, 1])",
                "images": len(records),
                "auroc": round(auroc(-score[member], -score[~member]), 4),
                "auroc_vs_real": round(auroc(-score[member], -score[group == "real"]), 4),
                "auroc_vs_others": round(auroc(-score[member], -score[group == "others"]), 4),
                "members_accepted": float(belongs[member].mean()),
                "real_accepted": float(belongs[group == "real"].mean()),
                "others_accepted": float(belongs[group == "others"].mean()),
                "calibration_at_floor": float(np.mean(np.asarray(calibration["scores"]) <= 1e-5)),
                "calibrate_seconds": float(calibrate_s),
                "verify_seconds": float(verify_s),
                "verify_s_per_image": round(float(verify_s) / len(records), 2),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    else:
        summarise(Path(sys.argv[2]), *sys.argv[3:5])
