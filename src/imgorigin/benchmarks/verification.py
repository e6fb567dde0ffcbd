"""The verification benchmark on the zoo: members vs real images and vs every other zoo model.

For each model M: score M's own samples (seed ``CAL_SEED``) as the calibration, then *fresh* samples of M (another
seed), real images (Fashion-MNIST test images; held-out photo crops for colour models) and each other model's
samples of the same image shape, all with the same settings, under every score that applies to M (:func:`scorers`):
``raw`` (the inversion's best MSE; decoder inversion with encoder initialisation for autoencoders, as
LatentTracer), ``complexity`` (raw over the image's compressed size), ``aedr`` (the training-free double
reconstruction, models with an encoder), for latent diffusion models the scores of their own diffusion model
(:mod:`imgorigin.verification.diffusion`) and, for pixel diffusion models, the denoising profile
(:mod:`imgorigin.verification.profile`, fitted on other samples of the model, seed ``PROFILE_SEED``). Report
AUROC, TPR at 1 % FPR, accuracy of the conformal decision at α (p-values against that score's calibration scores)
and seconds per image per score. Optionally time the faithful
per-image reference loop (batch 1, Adam lr 0.1, 1500 steps, random init, as the official RONAN code) against the
batched engine on one model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgorigin.images import quantize_8bit
from imgorigin.metrics import auroc, tpr_at_fpr
from imgorigin.verification.calibration import Calibration, conformal_p_value
from imgorigin.verification.complexity import complexity_calibrated
from imgorigin.verification.distances import mse
from imgorigin.verification.fastpath import FastConfig, double_reconstruction, fast_scores
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.generators.ddim import DDIMGenerator
from imgorigin.verification.inversion import InversionConfig, Inverter, image_key
from imgorigin.verification.profile import PROFILE, fitted

CAL_SEED = 1_000
MEMBER_SEED = 2_000
OTHER_SEED = 3_000
REAL_PHOTO_SEED = 4_000
PROFILE_SEED = 5_000
#: Every score the benchmark can measure (each model gets those that apply to it; ``complexity`` and
#: ``ddim-inversion (inverted z)`` are computed from ``raw``'s results).
SCORES = (
    "raw",
    "complexity",
    "aedr",
    "denoising (encoder z)",
    "ddim-inversion (encoder z)",
    "ddim-inversion (inverted z)",
    PROFILE,
)


@dataclass
class Scored:
    """Images of one source scored against one model by one score."""

    images: torch.Tensor
    scores: np.ndarray
    seconds: float
    #: The best latents found (the inversion's), for the scores computed from them.
    latents: torch.Tensor | None = None


#: A score method: images ``[N, C, H, W]`` in [0, 1] → their scores (small = like the model) and the time taken.
Scorer = Callable[[torch.Tensor], Scored]


def timed(images: torch.Tensor, score: Callable[[torch.Tensor], np.ndarray]) -> Scored:
    """Score a set; seconds per image measured around the whole call."""
    start = time.perf_counter()
    scores = np.asarray(score(images), dtype=np.float64)
    return Scored(images, scores, (time.perf_counter() - start) / max(1, len(images)))


def invert_set(generator: Generator, images: torch.Tensor, config: InversionConfig) -> Scored:
    """Invert a set with the batched engine (the ``raw`` score), keeping the best latents."""
    start = time.perf_counter()
    result = Inverter(generator, config)(images, keys=[image_key(x) for x in images], return_latents=True)
    return Scored(images, result.scores, (time.perf_counter() - start) / max(1, len(images)), result.latents)


def scorers(generator: Generator, config: InversionConfig, n_fit: int = 100) -> dict[str, Scorer]:
    """The scores measured for a model: ``raw`` always, ``aedr`` when it has an encoder, the training-free
    diffusion scores of latent diffusion models (:func:`imgorigin.verification.diffusion.latent_diffusion_scorers`,
    on the encoder's latents) and the denoising profile of pixel diffusion models (fitted on ``n_fit`` of the
    model's samples, drawn here). The scores computed from ``raw``'s results are :func:`derived`."""
    from imgorigin.verification.diffusion import latent_diffusion_scorers

    methods: dict[str, Scorer] = {"raw": lambda x: invert_set(generator, x, config)}
    if generator.has_encoder:
        methods["aedr"] = lambda x: timed(x, lambda i: double_reconstruction(generator, i).scores)
    for name, score in latent_diffusion_scorers(generator).items():
        methods[f"{name} (encoder z)"] = lambda x, score=score: timed(x, score)
    if isinstance(generator, DDIMGenerator):
        methods[PROFILE] = profile_scorer(generator, n_fit)
    return methods


def profile_scorer(generator: DDIMGenerator, n_fit: int) -> Scorer:
    """The denoising-profile score, its profile fitted once on ``n_fit`` samples (seed ``PROFILE_SEED``) on the
    first call; the fit is not counted in the seconds per image."""
    state: dict = {}

    def score(images: torch.Tensor) -> Scored:
        if not state:
            samples = quantize_8bit(generator.sample(n_fit, seed=PROFILE_SEED))
            state["config"] = fitted(generator, FastConfig(score=PROFILE), samples)
        return timed(images, lambda x: fast_scores(generator, x, state["config"]).scores)

    return score


def derived(generator: Generator) -> dict[str, Callable[[Scored], Scored]]:
    """Scores computed from ``raw``'s results, each ``raw`` Scored → its own (seconds include raw's):
    ``complexity`` (raw over the image's compressed size) and, for latent diffusion models, the DDIM-inversion
    score of the latent the decoder inversion found (``ddim-inversion (inverted z)``)."""
    from imgorigin.verification.diffusion import latent_diffusion_of, xt_atypicality

    out: dict[str, Callable[[Scored], Scored]] = {
        "complexity": lambda s: Scored(s.images, complexity_calibrated(s.scores, s.images), s.seconds)
    }
    diffusion = latent_diffusion_of(generator)
    if diffusion is not None:

        def from_inverted(s: Scored) -> Scored:
            latents = s.latents.to(generator.device)
            own = timed(s.images, lambda _: xt_atypicality(diffusion, latents))
            return Scored(s.images, own.scores, s.seconds + own.seconds)

        out["ddim-inversion (inverted z)"] = from_inverted
    return out


def photo_crops(n: int, image_shape: tuple[int, ...]) -> torch.Tensor:
    """The colour zoo's real images: ``n`` 8-bit crops of the held-out photos (:mod:`imgorigin.zoo.photos`)."""
    from imgorigin.zoo.photos import random_crops

    return quantize_8bit(random_crops("heldout", n, image_shape[-1], seed=REAL_PHOTO_SEED, flip=False))


def pair_metrics(cal: np.ndarray, members: np.ndarray, others: np.ndarray, alpha: float, floor: float = 0.0) -> dict:
    """AUROC, TPR@1%FPR and conformal-decision accuracy for members vs one non-member set.

    Members are the positives and a lower score is more member-like, hence the negated scores for the metrics.
    Decisions compare scores no finer than ``floor`` (the calibration's quantisation floor for raw MSE)."""
    cal = np.maximum(cal, floor)
    accept_m = np.array([conformal_p_value(max(s, floor), cal) > alpha for s in members])
    accept_o = np.array([conformal_p_value(max(s, floor), cal) > alpha for s in others])
    return {
        "auroc": auroc(-members, -others),
        "tpr_at_1_fpr": tpr_at_fpr(-members, -others, 0.01),
        "accuracy": float((accept_m.sum() + (~accept_o).sum()) / (members.size + others.size)),
        "members_accepted": float(accept_m.mean()),
        "non_members_accepted": float(accept_o.mean()),
    }


def reference_loop(
    generator: Generator, images: torch.Tensor, steps: int = 1500, lr: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, float]:
    """The official protocol: one image at a time, batch 1, Adam, random init, best MSE over all steps."""
    scores = np.empty(len(images))
    start = time.perf_counter()
    for i, image in enumerate(images):
        torch.manual_seed(seed + i)
        z = generator.sample_latents(1).detach().requires_grad_(True)
        optimiser = torch.optim.Adam([z], lr=lr)
        target = image[None].to(generator.device)
        best = float("inf")
        for _ in range(steps):
            loss = mse(generator.decode(z), target).sum()
            best = min(best, float(loss.detach()))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        scores[i] = best
    return scores, (time.perf_counter() - start) / len(images)


def histogram(
    path: Path,
    model: str,
    cal: np.ndarray,
    members: np.ndarray,
    others: dict[str, np.ndarray],
    threshold: float,
    score: str = "raw",
) -> None:
    """Score histograms (log scale) of members and each non-member set, with the α threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = np.concatenate([cal, members, *others.values()])
    low, high = np.log10(max(everything.min(), 1e-12)), np.log10(everything.max())
    bins = np.logspace(low, high, 50)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.hist(members, bins=bins, alpha=0.8, label=f"{model} (members)", color="black", histtype="step", lw=2)
    for name, scores in others.items():
        ax.hist(scores, bins=bins, alpha=0.45, label=name)
    if np.isfinite(threshold):
        ax.axvline(threshold, color="red", ls="--", label="threshold (α)")
    ax.set_xscale("log")
    ax.set_xlabel("best reconstruction MSE" if score == "raw" else f"{score} score")
    ax.set_ylabel("images")
    ax.set_title(f"inverting {model}" if score == "raw" else f"{model}: {score}")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict) -> str:
    """The results table: one row per (model, non-member set, score)."""
    lines = [
        "| model | non-members | score | AUROC | TPR@1%FPR | acc. @α | members acc. | non-members acc. | s/img |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, entry in results["models"].items():
        for other, by_score in entry["pairs"].items():
            for name, m in by_score.items():
                lines.append(
                    f"| {model} | {other} | {name} | {m['auroc']:.4f} | {m['tpr_at_1_fpr']:.3f} | "
                    f"{m['accuracy']:.3f} | {m['members_accepted']:.2f} | {m['non_members_accepted']:.2f} | "
                    f"{entry['seconds_per_image'][name]:.3g} |"
                )
    ref = results.get("reference_loop")
    if ref:
        lines += ["", f"| engine (model {ref['model']}) | images | s/img | img/s | AUROC |", "|---|---|---|---|---|"]
        for name in ("reference", "batched"):
            r = ref[name]
            lines.append(
                f"| {r['label']} | {ref['n']} | {r['seconds_per_image']:.3f} | "
                f"{1 / r['seconds_per_image']:.2f} | {r['auroc']:.4f} |"
            )
        lines.append(f"\nspeed-up: {ref['speedup']:.1f}×, AUROC difference {ref['auroc_difference']:+.4f}")
    return "\n".join(lines) + "\n"


def check_scores(scores: tuple[str, ...]) -> None:
    """Refuse an empty choice of scores, or one that names a score outside :data:`SCORES`."""
    unknown = sorted(set(scores) - set(SCORES))
    if unknown or not scores:
        raise ValueError(f"scores must be among {', '.join(SCORES)}; got {', '.join(unknown) or 'none'}")


def run(
    models: list[str],
    out_dir: Path,
    *,
    n_cal: int,
    n_members: int,
    n_real: int,
    n_other: int,
    alpha: float,
    config: InversionConfig | None,
    reference_model: str | None,
    n_reference: int,
    device: str | torch.device,
    log=print,
    scores: tuple[str, ...] = SCORES,
) -> dict:
    """Run the benchmark over zoo ``models``; write results.json, results.md and one histogram per model.

    ``config`` None: each model's shipped inversion settings (those of its shipped calibration). ``scores``: the
    subset of :data:`SCORES` to measure (those computed from ``raw`` need ``raw``); the histogram shows ``raw``,
    or the first score measured without it."""
    check_scores(scores)
    from imgorigin import zoo
    from imgorigin.zoo import data
    from imgorigin.zoo.calibrations import shipped_inversion

    out_dir.mkdir(parents=True, exist_ok=True)
    real = data_real(data, n_real)
    others = {}
    for name in zoo.list_models():
        try:
            others[name] = quantize_8bit(zoo.sample(name, n_other, seed=OTHER_SEED, device=device)).cpu()
        except FileNotFoundError as exc:  # weights not shipped in this checkout: say so, measure the rest
            log(f"skipping {name} as a non-member source: {exc}")
    results: dict = {
        "settings": {
            "n_cal": n_cal,
            "n_members": n_members,
            "n_real": int(len(real)),
            "n_other": n_other,
            "alpha": alpha,
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
        },
        "models": {},
    }
    for model in models:
        gen = zoo.load(model, device=device)
        model_config = config or shipped_inversion(model)
        own_real = real if tuple(real.shape[1:]) == gen.image_shape else photo_crops(n_real, gen.image_shape)
        images = {
            "cal": quantize_8bit(gen.sample(n_cal, seed=CAL_SEED)),
            "members": quantize_8bit(gen.sample(n_members, seed=MEMBER_SEED)),
            "real": own_real,
            **{
                name: imgs
                for name, imgs in others.items()
                if name != model and tuple(imgs.shape[1:]) == gen.image_shape  # other zoo models of its kind
            },
        }
        chosen = {name: f for name, f in scorers(gen, model_config, n_cal).items() if name in scores}
        if not chosen:
            log(f"{model}: none of the scores {', '.join(scores)} applies; skipped")
            continue
        scored = {name: {k: score(x) for k, x in images.items()} for name, score in chosen.items()}
        for name, transform in derived(gen).items():
            if name in scores and "raw" in scored:
                scored[name] = {k: transform(s) for k, s in scored["raw"].items()}
        shown = "raw" if "raw" in scored else next(iter(scored))
        calibration = Calibration(
            model_id=model,
            weight_hash=gen.weight_hash(),
            image_shape=gen.image_shape,
            inversion=model_config,
            scores=scored[shown]["cal"].scores,
        )
        pairs = {
            name: {
                score: pair_metrics(
                    np.sort(by_set["cal"].scores),
                    by_set["members"].scores,
                    by_set[name].scores,
                    alpha,
                    calibration.floor if score == "raw" else 0.0,
                )
                for score, by_set in scored.items()
            }
            for name in images
            if name not in ("cal", "members")
        }
        seconds = {score: seconds_per_image(by_set, exclude=("cal",)) for score, by_set in scored.items()}
        by_set = scored[shown]
        histogram(
            out_dir / f"{model}.png",
            model,
            by_set["cal"].scores,
            by_set["members"].scores,
            {k: v.scores for k, v in by_set.items() if k not in ("cal", "members")},
            calibration.threshold(alpha),
            shown,
        )
        results["models"][model] = {
            "inversion": model_config.to_dict(),
            "pairs": pairs,
            "seconds_per_image": seconds,
            "histogram_score": shown,
            "median_member_score": float(np.median(by_set["members"].scores)),
            "median_real_score": float(np.median(by_set["real"].scores)),
        }
        worst = min(p[shown]["auroc"] for p in pairs.values())
        log(f"{model}: worst {shown} AUROC {worst:.4f}, {seconds[shown]:.3f} s/img")
    if reference_model:
        reference_config = config or shipped_inversion(reference_model)
        results["reference_loop"] = compare_reference(
            zoo.load(reference_model, device=device), reference_model, real, n_reference, reference_config, log
        )
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out_dir / "results.md").write_text(markdown(results))
    return results


def seconds_per_image(by_set: dict[str, Scored], exclude: tuple[str, ...] = ()) -> float:
    """Mean seconds per image of a score over its sets (weighted by set size), leaving ``exclude`` out."""
    timed_sets = [s for k, s in by_set.items() if k not in exclude]
    return sum(s.seconds * len(s.scores) for s in timed_sets) / max(1, sum(len(s.scores) for s in timed_sets))


def compare_reference(
    gen: Generator, model: str, real: torch.Tensor, n: int, config: InversionConfig, log=print
) -> dict:
    """Per-image reference loop vs the batched engine on the same n members + n real images."""
    images = torch.cat([quantize_8bit(gen.sample(n, seed=MEMBER_SEED + 1)), real[:n]])
    ref_scores, ref_seconds = reference_loop(gen, images)
    batched = invert_set(gen, images, config)
    ref_auc = auroc(-ref_scores[:n], -ref_scores[n:])  # members first; lower score = member
    new_auc = auroc(-batched.scores[:n], -batched.scores[n:])
    log(
        f"reference loop {ref_seconds:.2f} s/img AUROC {ref_auc:.4f}; batched {batched.seconds:.3f} s/img "
        f"AUROC {new_auc:.4f}"
    )
    return {
        "model": model,
        "n": int(len(images)),
        "reference": {
            "label": "per-image reference (batch 1, Adam lr 0.1, 1500 steps, random init)",
            "seconds_per_image": ref_seconds,
            "auroc": ref_auc,
        },
        "batched": {"label": "batched engine (defaults)", "seconds_per_image": batched.seconds, "auroc": new_auc},
        "speedup": ref_seconds / batched.seconds,
        "auroc_difference": new_auc - ref_auc,
    }


def data_real(data, n: int) -> torch.Tensor:
    """The first ``n`` real test images (the full split when installed, else the shipped subset)."""
    images = data.test_images() if data.is_available() else data.subset_images()
    return images[:n]
