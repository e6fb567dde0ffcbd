"""Helpers of torchscript_must_show.sh: export + sample (prepare), and metrics of one verify run (summarise)."""

import json
import sys
from pathlib import Path
from typing import List  # noqa: UP035 (TorchScript needs typing.List here)

import numpy as np
import torch

from imgorigin import zoo
from imgorigin.images import quantize_8bit, save_png
from imgorigin.metrics import auroc
from imgorigin.verification import load_generator
from imgorigin.zoo import data

#: model -> (latent size, the two other zoo generators whose samples are non-members)
MODELS = {"dcgan": (64, ("vae", "ddpm")), "vae": (16, ("dcgan", "ddpm"))}


class TorchScriptExport(torch.nn.Module):
    """z -> image in [-1, 1] with a ``latent_shape`` attribute: the TorchScript contract of `imgorigin verify`."""

    latent_shape: List[int]  # noqa: UP006

    def __init__(self, net: torch.nn.Module, latent: int, unit_output: bool) -> None:
        super().__init__()
        self.net, self.latent_shape, self.unit_output = net, [latent], unit_output

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z)
        return x * 2 - 1 if self.unit_output else x


def write(images: torch.Tensor, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        save_png(image, folder / f"{i:03d}.png")


def prepare(work: Path) -> None:
    write(data.test_images()[-100:], work / "real")
    for name, (latent, others) in MODELS.items():
        gen = zoo.load(name)
        net = gen.modules()[0].eval()
        torch.jit.save(torch.jit.script(TorchScriptExport(net, latent, name == "vae")), work / f"{name}.pt")
        exported = load_generator(str(work / f"{name}.pt"))
        write(quantize_8bit(exported.sample(100, seed=777)), work / name / "members")
        for k, other in enumerate(others):
            write(quantize_8bit(zoo.sample(other, 50, seed=31 + k)), work / name / "others" / other)


def summarise(work: Path, name: str, calibrate_s: str, verify_s: str) -> None:
    records = [json.loads(line) for line in (work / f"{name}.jsonl").read_text().splitlines()]
    records = [r for r in records if "path" in r]  # not the run header
    member = np.array(["/members/" in r["path"] for r in records])
    score = np.array([r["score"] for r in records])
    belongs = np.array([r["belongs"] for r in records])
    print(
        json.dumps(
            {
                "model": f"{name} (TorchScript)",
                "images": len(records),
                "auroc": round(auroc(-score[member], -score[~member]), 4),
                "members_accepted": float(belongs[member].mean()),
                "non_members_accepted": float(belongs[~member].mean()),
                "calibrate_seconds": float(calibrate_s),
                "verify_seconds": float(verify_s),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    else:
        summarise(Path(sys.argv[2]), *sys.argv[3:6])
