"""Fast path (AEDR double reconstruction) against decoder inversion on the zoo models with an encoder.

For each model: a fast calibration on its own samples, the shipped inversion calibration, fresh members, real
Fashion-MNIST test images and samples of the other zoo models. Per score variant: AUROC (members against each
non-member set) and the share accepted at α (conformal p > α against the model's own calibration scores of that
variant; no other rule: the detail and information checks are off, so that the scores themselves are compared),
and seconds per image. Then ``screen`` (the fast score rejects, the inversion decides the rest) run for real on the
same images saved as PNGs, with a fresh score cache: its share inverted, accuracy and images/s.

    nice -n 10 python benchmarks/fast_path_zoo.py --models vae --out runs/fast-path/vae.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from imgorigin.images import quantize_8bit, save_png
from imgorigin.verification import Calibration, Inverter, Verifier, calibrate, default_calibration, load_generator
from imgorigin.verification.calibration import conformal_p_value
from imgorigin.verification.fastpath import FastConfig, double_reconstruction
from imgorigin.verification.inversion import image_key
from imgorigin.zoo import data

OTHERS = ("dcgan", "wgangp", "ddpm", "vae", "ldm")
#: Fast-score variants: name → f(first, second, homogeneity); small = like the model.
VARIANTS = {
    "ratio x H (AEDR)": lambda d1, d2, h: d1 / (d2 + 1e-12) * h,
    "ratio": lambda d1, d2, h: d1 / (d2 + 1e-12),
    "inverse ratio d2/d1": lambda d1, d2, h: d2 / (d1 + 1e-12),
    "single recon d1 (AEROBLADE-like, MSE)": lambda d1, d2, h: d1,
    "d1 x H": lambda d1, d2, h: d1 * h,
}


def accepted(scores: np.ndarray, calibration: np.ndarray, alpha: float) -> float:
    return float(np.mean([conformal_p_value(float(s), calibration) > alpha for s in scores]))


def auroc(members: np.ndarray, others: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(members)), np.ones(len(others))]
    return float(roc_auc_score(labels, np.r_[members, others]))


def run_model(name: str, args, log) -> dict:
    torch.manual_seed(0)
    gen = load_generator(f"zoo:{name}")
    sets = {"members": quantize_8bit(gen.sample(args.n_members, seed=7000))}
    real = data.test_images()
    pick = np.random.default_rng(7001).permutation(len(real))[: args.n_real]
    sets["real"] = real[torch.from_numpy(pick)]
    for other in OTHERS:
        if other != name:
            sets[other] = quantize_8bit(load_generator(f"zoo:{other}").sample(args.n_other, seed=7002))
    log(f"{name}: sampled {', '.join(f'{k} {len(v)}' for k, v in sets.items())}")

    began = time.perf_counter()
    fast_cal = calibrate(gen, args.n_cal, config=FastConfig(), seed=1000)
    cal_seconds = time.perf_counter() - began
    cal_parts = double_reconstruction(gen, quantize_8bit(gen.sample(args.n_cal, seed=1000)))
    fast, fast_seconds = {}, {}
    for key, images in sets.items():
        began = time.perf_counter()
        fast[key] = double_reconstruction(gen, images)
        fast_seconds[key] = (time.perf_counter() - began) / len(images)
    inv_cal = Calibration.load(default_calibration(f"zoo:{name}"))
    inverted, inv_seconds = {}, {}
    subsets = {k: v[: args.n_invert] if args.n_invert else v for k, v in sets.items()}
    for key, images in subsets.items():
        result = Inverter(gen, inv_cal.inversion)(images, keys=[image_key(x) for x in images])
        inverted[key], inv_seconds[key] = result.scores, result.seconds / len(images)
        log(f"{name}: inverted {key} ({inv_seconds[key]:.3f} s/image)")

    rows = []
    for variant, f in VARIANTS.items():
        cal_scores = f(cal_parts.first, cal_parts.second, cal_parts.homogeneity)
        scores = {k: f(v.first, v.second, v.homogeneity) for k, v in fast.items()}
        rows.append(_row(variant, scores, np.sort(cal_scores), args.alpha, fast_seconds))
    floored = {k: np.maximum(v, inv_cal.floor) for k, v in inverted.items()}
    rows.append(
        _row(
            "inversion (shipped calibration)" + (f", first {args.n_invert} per set" if args.n_invert else ""),
            floored,
            np.maximum(inv_cal.scores, inv_cal.floor),
            args.alpha,
            inv_seconds,
        )
    )
    return {
        "model": name,
        "n_cal_fast": args.n_cal,
        "n_cal_inversion": int(inv_cal.scores.size),
        "fast_calibration_seconds": cal_seconds,
        "rows": rows,
        "n_invert": args.n_invert,
        "screen": _screen(gen, inv_cal, fast_cal, subsets, args.alpha, log),
    }


def _row(variant: str, scores: dict, calibration: np.ndarray, alpha: float, seconds: dict) -> dict:
    members = scores["members"]
    others = [k for k in scores if k != "members"]
    pooled = np.concatenate([scores[k] for k in others])
    return {
        "score": variant,
        "auroc": {k: auroc(members, scores[k]) for k in others} | {"all non-members": auroc(members, pooled)},
        "members_accepted": accepted(members, calibration, alpha),
        "accepted": {k: accepted(scores[k], calibration, alpha) for k in others},
        "seconds_per_image": float(np.mean(list(seconds.values()))),
    }


def _screen(gen, inv_cal: Calibration, fast_cal: Calibration, sets: dict, alpha: float, log) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for key, images in sets.items():
            (root / key).mkdir()
            for i, image in enumerate(images):
                save_png(image, root / key / f"{i:04d}.png")
        verifier = Verifier(
            gen, inv_cal, method="screen", fast_calibration=fast_cal, cache_dir=root / "cache", detail_alpha=None
        )
        began = time.perf_counter()
        records = list(verifier.verify_paths([root / key for key in sets]))
        seconds = time.perf_counter() - began
    by_set: dict = {}
    for record in records:
        key = Path(record["path"]).parent.name
        entry = by_set.setdefault(key, {"n": 0, "accepted": 0, "inverted": 0})
        entry["n"] += 1
        entry["accepted"] += record["verdict"] == "member"
        entry["inverted"] += record["screen"]["stage"] == "inversion"
    log(f"screen: {verifier.stats} in {seconds:.1f} s")
    return {
        "reject_at": verifier.screen_reject,
        "alpha_inversion": alpha - verifier.screen_reject,
        "images": len(records),
        "inverted": verifier.stats["inversion"],
        "seconds": seconds,
        "images_per_second": len(records) / seconds,
        "by_set": by_set,
    }


def markdown(results: list[dict], alpha: float) -> str:
    lines = []
    for res in results:
        others = [k for k in res["rows"][0]["accepted"]]
        lines.append(f"\n### zoo:{res['model']} (α = {alpha})\n")
        lines.append(
            "| score | AUROC all | "
            + " | ".join(f"AUROC {k}" for k in others)
            + " | members acc. | "
            + " | ".join(f"{k} acc." for k in others)
            + " | s/image |"
        )
        lines.append("|---" * (3 + 2 * len(others)) + "|---|")
        for row in res["rows"]:
            lines.append(
                f"| {row['score']} | {row['auroc']['all non-members']:.4f} | "
                + " | ".join(f"{row['auroc'][k]:.4f}" for k in others)
                + f" | {row['members_accepted']:.2f} | "
                + " | ".join(f"{row['accepted'][k]:.2f}" for k in others)
                + f" | {row['seconds_per_image']:.4f} |"
            )
        s = res["screen"]
        lines.append(
            f"\nscreen (fast rejects at p ≤ {s['reject_at']:.3g}, inversion at α = {s['alpha_inversion']:.3g}): "
            f"{s['inverted']} of {s['images']} images inverted ({s['inverted'] / s['images']:.1%}), "
            f"{s['seconds']:.1f} s = {s['images_per_second']:.2f} images/s; accepted: "
            + ", ".join(f"{k} {v['accepted']}/{v['n']}" for k, v in s["by_set"].items())
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vae,ldm")
    parser.add_argument("--n-cal", type=int, default=200, help="fast calibration samples")
    parser.add_argument("--n-members", type=int, default=100)
    parser.add_argument("--n-real", type=int, default=100)
    parser.add_argument("--n-other", type=int, default=50)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--n-invert", type=int, default=0, help="invert (and screen) only the first N per set (0: all)")
    parser.add_argument("--out", type=Path, default=Path("runs/fast-path/zoo.json"))
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 for ldm: batched linalg.solve hangs at 2, see the doc)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        print(message, flush=True)

    results = [run_model(m, args, log) for m in args.models.split(",")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1))
    print(markdown(results, args.alpha))


if __name__ == "__main__":
    main()
