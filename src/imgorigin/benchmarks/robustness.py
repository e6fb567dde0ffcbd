"""Verification of images as they arrive in the wild: JPEG, WebP, crops, blur, noise and resizing.

For each zoo model M (its shipped, pristine calibration): members are fresh samples of M (seed ``MEMBER_SEED``,
never the calibration's), non-members are real Fashion-MNIST test images (the shipped subset) and samples of other
zoo models. Every image of every set goes through each perturbation of the grid and is written as a real file (JPEG
and WebP encoded by Pillow, everything else an 8-bit PNG at the original size, except the ``scaled`` point that is
left at twice the size), so the loader sees what a user's file would show. The files go through
:meth:`Verifier.verify_paths` and each record's verdict is counted.

Two decision rules are reported per grid point:

* ``rule`` (what ``imgorigin verify`` does with the shipped calibration): an image whose file shows processing
  (JPEG, lossy WebP, a size other than the model's) is ``inconclusive`` (``processing_not_calibrated``), and so is
  one with less fine detail than the model's own images (``smoother_than_model``: resized and back, blurred); the
  p-value it would have had against the pristine calibration gives the ``would-be`` columns;
* ``matched``: for processing the file shows (JPEG and WebP), a second calibration is built on ``n_cal`` of M's own
  samples (seed ``PROCESSED_CAL_SEED``) processed the same way (``Calibration.perturbation``), and the verifier
  decides against it.

Undetectable processing (crop, blur, noise, resize and back, all saved as PNG at the model's size) is decided
against the pristine calibration: the table says what that does.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from imgorigin.images import uint8_codes
from imgorigin.labels import INCONCLUSIVE, MEMBER, NON_MEMBER
from imgorigin.metrics import auroc
from imgorigin.verification.calibration import Calibration
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.verifier import Verifier, calibrate, decide, processing_family

MEMBER_SEED = 2_000
PROCESSED_CAL_SEED = 4_000
DEFAULT_MODELS = ("dcgan", "vae")
DEFAULT_OTHERS = ("dcgan", "vae", "wgangp", "ldm")


@dataclass(frozen=True)
class Perturbation:
    """One grid point: a kind of processing at one strength."""

    kind: str  # none, jpeg, webp, crop, blur, noise, resize, scaled
    strength: float | None = None

    @property
    def name(self) -> str:
        if self.strength is None:
            return self.kind
        value = int(self.strength) if float(self.strength).is_integer() else self.strength
        return f"{self.kind}:{value}"

    @property
    def suffix(self) -> str:
        return {"jpeg": ".jpg", "webp": ".webp"}.get(self.kind, ".png")

    @property
    def detectable(self) -> bool:
        """Whether the written file shows the processing (lossy format or another size)."""
        return self.kind in ("jpeg", "webp", "scaled")


#: The grid of the issue (AEROBLADE's and Cioni's grids, cut to what 2 CPU cores run in minutes).
GRID: tuple[Perturbation, ...] = (
    Perturbation("none"),
    Perturbation("jpeg", 90),
    Perturbation("jpeg", 75),
    Perturbation("jpeg", 50),
    Perturbation("webp", 90),
    Perturbation("webp", 60),
    Perturbation("crop", 0.9),
    Perturbation("crop", 0.7),
    Perturbation("blur", 1.0),
    Perturbation("blur", 2.0),
    Perturbation("noise", 0.02),
    Perturbation("noise", 0.05),
    Perturbation("resize", 0.5),
    Perturbation("scaled", 2.0),
)


def parse_grid(text: str) -> list[Perturbation]:
    """'none,jpeg:90,blur:1' -> perturbations; 'default' -> :data:`GRID`."""
    if text.strip() in ("", "default"):
        return list(GRID)
    grid = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        kind, _, value = item.partition(":")
        if kind not in {p.kind for p in GRID}:
            raise ValueError(f"unknown perturbation {kind!r} (known: {', '.join(sorted({p.kind for p in GRID}))})")
        if kind == "none":
            grid.append(Perturbation("none"))
            continue
        if not value:
            raise ValueError(f"perturbation {kind!r} needs a strength, e.g. {kind}:{GRID_EXAMPLE[kind]}")
        grid.append(Perturbation(kind, float(value)))
    return grid


GRID_EXAMPLE = {"jpeg": 75, "webp": 80, "crop": 0.9, "blur": 1, "noise": 0.02, "resize": 0.5, "scaled": 2}


def perturb(codes: np.ndarray, perturbation: Perturbation, path: Path, seed: int = 0) -> Path:
    """Write the uint8 [H, W] image ``codes`` processed by ``perturbation`` to ``path`` (suffix added); returns it."""
    image = Image.fromarray(codes)
    kind, strength = perturbation.kind, perturbation.strength
    height, width = codes.shape
    path = path.with_suffix(perturbation.suffix)
    if kind == "jpeg":
        image.save(path, format="JPEG", quality=int(strength))
        return path
    if kind == "webp":
        image.save(path, format="WEBP", quality=int(strength), method=4)
        return path
    if kind == "crop":
        w, h = round(width * strength), round(height * strength)
        left, top = (width - w) // 2, (height - h) // 2
        image = image.crop((left, top, left + w, top + h)).resize((width, height), Image.Resampling.BICUBIC)
    elif kind == "blur":
        image = image.filter(ImageFilter.GaussianBlur(strength))
    elif kind == "noise":
        rng = np.random.default_rng(seed)
        noisy = codes / 255.0 + rng.normal(0.0, strength, codes.shape)
        image = Image.fromarray(np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8))
    elif kind == "resize":
        small = (max(1, round(width * strength)), max(1, round(height * strength)))
        image = image.resize(small, Image.Resampling.BICUBIC).resize((width, height), Image.Resampling.BICUBIC)
    elif kind == "scaled":
        image = image.resize((round(width * strength), round(height * strength)), Image.Resampling.BICUBIC)
    elif kind != "none":
        raise ValueError(f"unknown perturbation {kind!r}")
    image.save(path, format="PNG")
    return path


def to_codes(images: torch.Tensor) -> np.ndarray:
    """[N, 1, H, W] in [0, 1] -> uint8 [N, H, W], rounded as ``save_png`` does."""
    return uint8_codes(images)[:, 0].numpy()


def write_set(codes: np.ndarray, perturbation: Perturbation, folder: Path, seed: int) -> list[Path]:
    """Write every image of a set processed one way; the noise of image i is seeded by ``seed + i``."""
    folder.mkdir(parents=True, exist_ok=True)
    return [perturb(c, perturbation, folder / f"{i:04d}", seed=seed + i) for i, c in enumerate(codes)]


def _fraction(values: Sequence[bool]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def summarise(records: Sequence[dict], is_member: Sequence[bool], calibration: Calibration, alpha: float) -> dict:
    """The table fields of one grid point from verify records (``is_member`` per record).

    ``rule``: the records' verdicts with the pristine calibration (processing not calibrated or smoother than the
    model -> inconclusive); ``would_be``: the pristine decision without those two rules; ``smoother``: the
    fractions of members and non-members the fine-detail check flagged; ``matched`` (when the records were decided
    against a processed calibration): the records' own verdicts."""
    scores = np.array([r["score"] for r in records])
    member = np.asarray(is_member, dtype=bool)
    rule, would_be = [], []
    smoother = np.array(["smoother_than_model" in r["reasons"] for r in records], dtype=bool)
    for r in records:
        flat = [reason for reason in r["reasons"] if reason == "too_little_information"]
        processed = [] if processing_family(r["processing"]) is None else ["processing_not_calibrated"]
        smooth = [reason for reason in r["reasons"] if reason == "smoother_than_model"]
        rule.append(decide(r["score"], calibration, alpha, withheld=[*flat, *processed, *smooth]))
        would_be.append(decide(r["score"], calibration, alpha, withheld=flat)["verdict"])
    out = {
        "n_members": int(member.sum()),
        "n_non_members": int((~member).sum()),
        "auroc": auroc(-scores[member], -scores[~member]) if member.any() and (~member).any() else float("nan"),
        "median_score_members": float(np.median(scores[member])) if member.any() else float("nan"),
        "median_score_non_members": float(np.median(scores[~member])) if (~member).any() else float("nan"),
        "families": sorted({str(processing_family(r["processing"])) for r in records}),
        "rule": _counts([d["verdict"] for d in rule], member),
        "would_be": _counts(would_be, member),
        "smoother": {"members": _fraction(smoother[member]), "non_members": _fraction(smoother[~member])},
    }
    if any(r["processing"].get("calibration", "pristine") != "pristine" for r in records):
        out["matched"] = _counts([r["verdict"] for r in records], member)
    return out


def _counts(verdicts: Sequence[str], member: np.ndarray) -> dict:
    """Acceptance, inconclusive and false-member rates of one decision rule."""
    verdicts = np.asarray(verdicts)
    m, n = verdicts[member], verdicts[~member]
    decided = n[n != INCONCLUSIVE]
    return {
        "members_accepted": _fraction(m == MEMBER),
        "members_rejected": _fraction(m == NON_MEMBER),
        "members_inconclusive": _fraction(m == INCONCLUSIVE),
        "non_members_accepted": _fraction(n == MEMBER),
        "non_members_inconclusive": _fraction(n == INCONCLUSIVE),
        "non_members_with_verdict": int(decided.size),
        "false_member_rate_among_verdicts": _fraction(decided == MEMBER) if decided.size else 0.0,
    }


def processed_calibration(
    generator: Generator,
    calibration: Calibration,
    perturbation: Perturbation,
    samples: torch.Tensor,
    folder: Path,
) -> Calibration:
    """A calibration on the model's own samples processed by ``perturbation``, written as files and read back,
    with the pristine calibration's inversion settings; its ``perturbation`` is what the loader detects."""
    from imgorigin.images import load_image

    paths = write_set(to_codes(samples), perturbation, folder, seed=PROCESSED_CAL_SEED)
    channels, height, width = generator.image_shape
    family = processing_family(load_image(paths[0], channels, (height, width)).processing)
    bound = calibration.bind(generator)  # the pristine calibration's learned initialiser, when it has one
    config = calibration.inversion  # exactly the pristine settings: no new initialiser, no retry search
    made = calibrate(bound, len(paths), config=config, sample_dir=[folder], auto_retries=0, learned_init=False)
    made.perturbation = family
    return made


@contextmanager
def loader_warnings_off() -> Iterator[None]:
    """Silence the image loader's per-file warnings for the duration of a run."""
    loader_log = logging.getLogger("imgorigin")
    level = loader_log.level
    loader_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        loader_log.setLevel(level)


def run(
    models: Sequence[str],
    out: str | Path,
    *,
    grid: Sequence[Perturbation] = GRID,
    others: Sequence[str] = DEFAULT_OTHERS,
    n_members: int = 30,
    n_real: int = 30,
    n_other: int = 10,
    n_cal: int = 30,
    matched: bool = True,
    alpha: float = 0.05,
    device: str | torch.device = "cpu",
    load_model: Callable[[str], Generator] | None = None,
    load_calibration: Callable[[str], Calibration] | None = None,
    sample: Callable[[str, int, int], torch.Tensor] | None = None,
    real_images: torch.Tensor | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the robustness grid; writes ``out/results.json``, ``out/results.md`` and ``out/<model>.png``.

    ``load_model`` / ``load_calibration`` / ``sample(name, n, seed)`` / ``real_images`` default to the zoo, its
    shipped calibrations and the shipped Fashion-MNIST test subset; tests pass tiny stand-ins."""
    if load_model is None:
        from imgorigin import zoo

        def load_model(name: str) -> Generator:
            return zoo.load(name, device=device)

    if load_calibration is None:
        from imgorigin.verification import default_calibration

        def load_calibration(name: str) -> Calibration:
            return Calibration.load(default_calibration(f"zoo:{name}"))

    if sample is None:
        from imgorigin import zoo

        def sample(name: str, n: int, seed: int) -> torch.Tensor:
            return zoo.sample(name, n, seed=seed, device=device).cpu()

    if real_images is None:
        from imgorigin.zoo import data

        real_images = data.subset_images()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with loader_warnings_off():  # one "resized" warning per file of the scaled point would bury the log
        start = time.perf_counter()
        sources = list(dict.fromkeys([*models, *others]))
        n_sample = max(n_members, n_other)
        codes = {name: to_codes(sample(name, n_sample, MEMBER_SEED)) for name in sources}
        codes["real"] = to_codes(real_images[:n_real])
        results: dict = {
            "models": {},
            "settings": _settings(models, others, grid, n_members, n_real, n_other, n_cal, alpha),
        }
        for name in models:
            generator, calibration = load_model(name), load_calibration(name)
            rows, model_start = [], time.perf_counter()
            cal_samples = sample(name, n_cal, PROCESSED_CAL_SEED) if matched else None
            for perturbation in grid:
                point_start = time.perf_counter()
                folder = out / "images" / perturbation.name.replace(":", "-")
                paths: list[Path] = []
                member_flags: list[bool] = []
                for source in [name, "real", *(o for o in others if o != name)]:
                    count = n_members if source == name else n_real if source == "real" else n_other
                    written = write_set(codes[source][:count], perturbation, folder / source, seed=hash_seed(source))
                    paths += written
                    member_flags += [source == name] * len(written)
                extra = []
                if matched and perturbation.kind in ("jpeg", "webp"):
                    cal_folder = out / "calibration" / name / perturbation.name.replace(":", "-")
                    extra = [processed_calibration(generator, calibration, perturbation, cal_samples, cal_folder)]
                verifier = Verifier(generator, calibration, alpha=alpha, processed_calibrations=extra)
                by_path = {r["path"]: r for r in verifier.verify_paths([str(p) for p in paths]) if "score" in r}
                records = [by_path[str(p)] for p in paths if str(p) in by_path]
                flags = [f for p, f in zip(paths, member_flags, strict=True) if str(p) in by_path]
                row = {"perturbation": perturbation.kind, "strength": perturbation.strength, "name": perturbation.name}
                row.update(summarise(records, flags, calibration, alpha))
                row["images"] = len(records)
                row["seconds"] = round(time.perf_counter() - point_start, 1)
                rows.append(row)
                log(f"{name} {perturbation.name}: AUROC {row['auroc']:.3f}, {_brief(row)} ({row['seconds']} s)")
            results["models"][name] = {"rows": rows, "seconds": round(time.perf_counter() - model_start, 1)}
            plot(name, rows, out / f"{name}.png")
        results["wall_seconds"] = round(time.perf_counter() - start, 1)
        results["machine"] = machine()
        (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        (out / "results.md").write_text(markdown(results))
        return results


def hash_seed(source: str) -> int:
    """A fixed per-source noise seed (not Python's salted ``hash``)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(source)) * 1_000


def _brief(row: dict) -> str:
    rule = row["rule"]
    text = (
        f"members accepted {rule['members_accepted']:.0%} / inconclusive {rule['members_inconclusive']:.0%}, "
        f"non-members accepted {rule['non_members_accepted']:.0%} "
        f"(would-be {row['would_be']['non_members_accepted']:.0%})"
    )
    if "matched" in row:
        text += f"; matched calibration: members {row['matched']['members_accepted']:.0%}, "
        text += f"non-members {row['matched']['non_members_accepted']:.0%}"
    return text


def _settings(models, others, grid, n_members, n_real, n_other, n_cal, alpha) -> dict:
    return {
        "models": list(models),
        "others": list(others),
        "grid": [p.name for p in grid],
        "n_members": n_members,
        "n_real": n_real,
        "n_other": n_other,
        "n_cal_processed": n_cal,
        "alpha": alpha,
        "member_seed": MEMBER_SEED,
        "processed_calibration_seed": PROCESSED_CAL_SEED,
    }


def machine() -> dict:
    """Where the run happened."""
    import os

    return {
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def _pct(value: float) -> str:
    return "–" if value != value else f"{value:.0%}"


def markdown(results: dict) -> str:
    """The tables of results.md: one per model."""
    s = results["settings"]
    lines = [
        "# Verification under perturbation",
        "",
        f"Members: {s['n_members']} fresh samples of the model; non-members: {s['n_real']} real Fashion-MNIST "
        f"test images + {s['n_other']} samples of each other model ({', '.join(s['others'])}); α = {s['alpha']}. "
        f"Wall time {results['wall_seconds']:.0f} s on {results['machine']['cpu_cores']} CPU cores.",
        "",
        "`rule`: shipped calibration, processing the file shows or less fine detail than the model's own images "
        "(`smoother_than_model`) -> `inconclusive`; `would-be`: the pristine verdict without those rules; "
        "`smoother`: members / non-members the fine-detail check flagged; `matched`: decided against a calibration on "
        f"{s['n_cal_processed']} own samples processed the same way. FM|verdict = non-members called members among "
        "the non-members that got a verdict.",
        "",
    ]
    for name, model in results["models"].items():
        lines += [
            f"## `{name}` ({model['seconds']:.0f} s)",
            "",
            "| perturbation | detected | smoother | AUROC | members accepted | members inconclusive "
            "| members called non-member | non-members accepted | non-members inconclusive | FM\\|verdict "
            "| would-be: members / non-members accepted | matched: members / non-members accepted |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in model["rows"]:
            rule, wb = row["rule"], row["would_be"]
            matched = row.get("matched")
            matched_text = (
                f"{_pct(matched['members_accepted'])} / {_pct(matched['non_members_accepted'])}" if matched else "–"
            )
            detected = ", ".join(f for f in row["families"] if f != "None") or "no"
            smoother_text = f"{_pct(row['smoother']['members'])} / {_pct(row['smoother']['non_members'])}"
            lines.append(
                f"| {row['name']} | {detected} | {smoother_text} | {row['auroc']:.3f} "
                f"| {_pct(rule['members_accepted'])} | {_pct(rule['members_inconclusive'])} "
                f"| {_pct(rule['members_rejected'])} | {_pct(rule['non_members_accepted'])} "
                f"| {_pct(rule['non_members_inconclusive'])} | {_pct(rule['false_member_rate_among_verdicts'])} "
                f"| {_pct(wb['members_accepted'])} / {_pct(wb['non_members_accepted'])} | {matched_text} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(name: str, rows: Sequence[dict], path: Path) -> None:
    """One figure per model: AUROC and acceptance rates against strength, one panel per kind of processing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in dict.fromkeys(r["perturbation"] for r in rows) if k != "none"]
    if not kinds:
        return
    pristine = next((r for r in rows if r["perturbation"] == "none"), None)
    fig, axes = plt.subplots(1, len(kinds), figsize=(2.6 * len(kinds), 2.8), sharey=True, squeeze=False)
    series = (
        ("AUROC", lambda r: r["auroc"], "k", "-"),
        ("members accepted", lambda r: r["rule"]["members_accepted"], "tab:green", "-"),
        ("members inconclusive", lambda r: r["rule"]["members_inconclusive"], "tab:orange", "-"),
        ("non-members accepted", lambda r: r["rule"]["non_members_accepted"], "tab:red", "-"),
        ("matched: members accepted", lambda r: r.get("matched", {}).get("members_accepted"), "tab:green", "--"),
        ("matched: non-members acc.", lambda r: r.get("matched", {}).get("non_members_accepted"), "tab:red", "--"),
    )
    for ax, kind in zip(axes[0], kinds, strict=True):
        chosen = [r for r in rows if r["perturbation"] == kind]
        strengths = [r["strength"] for r in chosen]
        for label, value, colour, style in series:
            values = [value(r) for r in chosen]
            if all(v is None for v in values):
                continue
            ax.plot(
                strengths, [np.nan if v is None else v for v in values], style, color=colour, marker="o", label=label
            )
            if pristine is not None and value(pristine) is not None and style == "-":
                ax.axhline(value(pristine), color=colour, lw=0.5, alpha=0.4)
        ax.set_title(kind)
        ax.set_xlabel(
            {"jpeg": "quality", "webp": "quality", "crop": "kept fraction", "blur": "σ (px)"}.get(kind, "strength")
        )
        ax.set_ylim(-0.05, 1.05)
    axes[0][0].set_ylabel(f"zoo:{name}")
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
