"""Helpers of ddpm_must_show.sh: write the image sets (prepare) and the metrics of one verify run (summarise).

Issue 16's check for the zoo ``ddpm`` with its shipped (denoising-profile) calibration: 100 fresh samples (seed 777,
never the calibration's seed 1000) against 100 Fashion-MNIST test images and 100 images of four other zoo
generators (dcgan-twin, wgangp, vae, ldm: 25 each), all saved as 8-bit PNGs (the test images: the last 100 of
the full test set, Debian's dataset-fashion-mnist). The zoo's ``ddpm-one-step`` (a student
distilled to reproduce ddpm's outputs) is reported as its own group: it is not another generator in the sense of
the check, and the profile accepts its images (see the README).
"""

import json
import sys
from pathlib import Path

from must_show_common import scored_by_group, write

from imgorigin import zoo
from imgorigin.images import quantize_8bit
from imgorigin.metrics import auroc
from imgorigin.zoo import data

OTHERS = ("dcgan-twin", "wgangp", "vae", "ldm")
GROUPS = ("members", "real", "others", "student")


def prepare(work: Path) -> None:
    write(quantize_8bit(zoo.sample("ddpm", 100, seed=777)), work / "members")
    write(data.test_images()[-100:], work / "real")
    for k, other in enumerate(OTHERS):
        write(quantize_8bit(zoo.sample(other, 25, seed=31 + k)), work / "others" / other)
    write(quantize_8bit(zoo.sample("ddpm-one-step", 50, seed=41)), work / "student")


def summarise(work: Path, verify_s: str) -> None:
    records, group, score, belongs = scored_by_group(work / "verify.jsonl", GROUPS)
    member = group == "members"
    non = (group == "real") | (group == "others")
    print(
        json.dumps(
            {
                "model": "zoo:ddpm, shipped calibration (" + records[0]["method"] + ")",
                "images": len(records),
                "auroc": round(auroc(-score[member], -score[non]), 4),
                **{f"auroc_vs_{g}": round(auroc(-score[member], -score[group == g]), 4) for g in GROUPS[1:]},
                "members_accepted": float(belongs[member].mean()),
                "non_members_accepted": float(belongs[non].mean()),
                **{f"{g}_accepted": float(belongs[group == g].mean()) for g in GROUPS[1:]},
                "verify_seconds": float(verify_s),
                "verify_s_per_image": round(float(verify_s) / len(records), 3),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    else:
        summarise(Path(sys.argv[2]), sys.argv[3])
