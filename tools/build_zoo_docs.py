"""Maintainer tool, run from a checkout: train a zoo model into it, write its model card, contact sheet and FD.

    python tools/build_zoo_docs.py train NAME [--device cpu] [--threads 1]  # weights + card + sheet + index
    python tools/build_zoo_docs.py card NAME...                              # card + docs/zoo/NAME.md from files
    python tools/build_zoo_docs.py sheet NAME...|real                        # docs/zoo/NAME.png
    python tools/build_zoo_docs.py fd NAME... [--n 5000]                     # Fréchet distance into the cards
    python tools/build_zoo_docs.py index                                     # docs/zoo/README.md

Every path is the checkout's, found from this file's location: weights and cards under
src/imgorigin/zoo/weights/, pages and contact sheets under docs/zoo/. The user-facing API is
:func:`imgorigin.zoo.train` (any output directory); this tool is what produced the shipped files, so the numbers
in the cards (training time, FD) can be re-measured the same way.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from zoo_quality import FD_BACKBONE, FD_LAYER, frechet_distance, gaussian_stats, image_features

import imgorigin
from imgorigin.images import uint8_codes
from imgorigin.runtime import default_cache_dir, sha256_file
from imgorigin.zoo import get_recipe, list_models, load, sample
from imgorigin.zoo.training.common import config_dict, environment, write_json

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO_ROOT / "src" / "imgorigin"
WEIGHTS_DIR = PACKAGE_DIR / "zoo" / "weights"
DATA_DIR = PACKAGE_DIR / "zoo" / "data"
DOCS_DIR = REPO_ROOT / "docs" / "zoo"
SHEET_SEED = 0
FD_SEED = 1000
FD_SAMPLES = 5000

REPRODUCIBILITY = (
    "Everything is seeded (torch.manual_seed and explicit torch.Generator objects for data order, latents and "
    "noise), so `imgorigin zoo train NAME` re-runs this recipe exactly; results are bit-identical only on the "
    "same hardware, thread count and library versions (floating-point reductions differ across machines)."
)


def contact_sheet(images: torch.Tensor, path: Path, nrow: int = 8, scale: int = 3, pad: int = 2) -> Path:
    """Save images ``[N, C, H, W]`` in [0, 1] (gray or RGB) as an ``nrow``-wide grid PNG, upscaled ``scale``×
    (nearest) when they are smaller than 64 pixels."""
    from PIL import Image

    x = uint8_codes(images).numpy().transpose(0, 2, 3, 1)
    x = x[..., 0] if x.shape[-1] == 1 else x
    n, h, w = x.shape[:3]
    scale = scale if h < 64 else 1
    rows = (n + nrow - 1) // nrow
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, *x.shape[3:]), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = x[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST).save(path)
    return path


def write_sheet(name: str) -> Path:
    """docs/zoo/NAME.png: 64 samples of a model (seed 0), or 64 real test images for ``real``."""
    if name == "real":
        from imgorigin.zoo.data import subset_images

        return contact_sheet(subset_images()[:64], DOCS_DIR / "real.png")
    return contact_sheet(sample(name, 64, seed=SHEET_SEED, weights=WEIGHTS_DIR), DOCS_DIR / f"{name}.png")


def card_path(name: str) -> Path:
    """The checkout's model card of ``name`` (what ``imgorigin.zoo.model_card`` returns once installed)."""
    return WEIGHTS_DIR / name / "card.json"


def build_card(name: str, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """Assemble the card from the recipe, the weight files and the training record (kept from the old card)."""
    recipe = get_recipe(name)
    old = json.loads(card_path(name).read_text()) if card_path(name).is_file() else {}
    record = training or old.get("training")
    gen = load(name, weights=WEIGHTS_DIR)
    cfg = recipe.config
    files = []
    for rel in recipe.weight_files():
        p = WEIGHTS_DIR / rel
        files.append({"path": rel, "bytes": p.stat().st_size, "sha256": sha256_file(p)})
    folder_bytes = sum(
        p.stat().st_size for p in (WEIGHTS_DIR / name).rglob("*") if p.is_file() and p.name != "card.json"
    )
    parameters = (record or {}).get("training", {}).get("parameters")
    card: dict[str, Any] = {
        "name": name,
        "family": recipe.family,
        "summary": recipe.summary,
        "latent_shape": list(gen.latent_shape),
        "parameters": parameters,
        "generator": {
            "class": type(gen).__name__,
            "id": gen.id,
            "latent_shape": list(gen.latent_shape),
            "image_shape": list(gen.image_shape),
            "output_range": "[0, 1]",
            "has_encoder": gen.has_encoder,
            "parameters": parameters,
            "weight_hash": gen.weight_hash(),
        },
        "sampling": sampling_description(name),
        "seed": cfg.seed,
        "config": config_dict(cfg),
        "training": record,
        "weights": {"files": files, "folder_bytes": folder_bytes},
        "quality": old.get("quality") or {"frechet_distance": None, "status": "not measured yet"},
        "autoencoder_reconstruction": autoencoder_psnr(name, gen),
        "data": DATA_TEXT[training_data(name)],
        "reproducibility": REPRODUCIBILITY,
    }
    write_json(card_path(name), card)
    write_markdown(card)
    return card


def autoencoder_psnr(name: str, gen, n: int = 200) -> dict[str, Any] | None:
    """Mean PSNR of the 8-bit D(E(x)) of ``n`` held-out and ``n`` training photo crops, for photo models with an
    encoder (how strong the autoencoder is); None for the others."""
    if training_data(name) != "photos" or not gen.has_encoder:
        return None
    from imgorigin.images import quantize_8bit
    from imgorigin.metrics import psnr
    from imgorigin.verification.fastpath import reconstruct
    from imgorigin.zoo.photos import random_crops

    size = get_recipe(name).config.image_size
    out: dict[str, Any] = {"n": n, "what": "mean per-image PSNR (dB) of the 8-bit D(E(x)), posterior mean"}
    for split, seed in (("heldout", 0), ("train", 1)):
        x = random_crops(split, n, size, seed=seed)
        rec = quantize_8bit(reconstruct(gen, x)).cpu()
        out[f"{split}_psnr_db"] = round(float(psnr(rec.numpy(), x.numpy()).mean()), 2)
    return out


def training_data(name: str) -> str:
    """What a model was trained on: ``photos`` (its config sets ``training_crops``), the module's ``DATA``, or
    ``fashion-mnist``."""
    recipe = get_recipe(name)
    if getattr(recipe.config, "training_crops", 0):
        return "photos"
    return getattr(recipe.module, "DATA", "fashion-mnist")


#: The card's data section, by :func:`training_data` (Fashion-MNIST when the recipe names none).
DATA_TEXT = {
    "fashion-mnist": {
        "train": "Fashion-MNIST train split (60 000 images), Debian package dataset-fashion-mnist, MIT",
        "reference": "Fashion-MNIST test split (10 000 images), never used for training",
    },
    "photos": {
        "train": "random crops (random zoom, position, flip; the model's image size) of the sample photos that "
        "ship with scikit-image "
        "(astronaut, coffee, rocket, motorcycle_left/right, hubble_deep_field, retina, ihc) and scikit-learn "
        "(china.jpg); see imgorigin.zoo.photos",
        "reference": "crops of photos never used for training: scikit-image chelsea, scikit-learn flower.jpg, "
        "matplotlib grace_hopper.jpg",
    },
    "teacher": {
        "train": "the teacher's own samples: x_T ~ N(0, I) and the zoo ddpm's deterministic 10-step DDIM output "
        "for it (no real images)",
        "reference": "Fashion-MNIST test split (10 000 images), never used for training",
    },
}


def sampling_description(name: str) -> dict[str, Any]:
    """The card's account of how a model samples (what verification inverts)."""
    cfg = get_recipe(name).config
    if name == "ddpm":
        return {
            "procedure": "x_T ~ N(0, I) [1, 28, 28] → deterministic DDIM (eta = 0, trailing timestep spacing: "
            "t = 999, 899, ..., 99; predicted x_0 clipped to [-1, 1]) → image in [-1, 1] → [0, 1]",
            "num_inference_steps": cfg.num_inference_steps,
            "num_train_timesteps": cfg.num_train_timesteps,
        }
    if get_recipe(name).module_name == "ldm":
        shape = [cfg.latent_channels, cfg.latent_size, cfg.latent_size]
        return {
            "procedure": f"x_T ~ N(0, I) {shape} → latent DDIM (eta = 0, trailing spacing, no x_0 clipping, "
            f"{cfg.beta_schedule} β schedule {cfg.beta_start:g}..{cfg.beta_end:g}) "
            "→ scaled latent → AutoencoderKL decoder (latent / scaling_factor) → image; verification inverts "
            "the decoder only, initialised from the encoder's posterior mean",
            "num_inference_steps": cfg.num_inference_steps,
            "num_train_timesteps": cfg.num_train_timesteps,
        }
    if name == "ddpm-one-step":
        return {
            "procedure": "x_T ~ N(0, I) [1, 28, 28] → the student UNet once (t = 999) → image in [-1, 1] → [0, 1]; "
            "trained to reproduce the ddpm's 10-step DDIM output for the same x_T",
            "num_inference_steps": 1,
        }
    return {"procedure": "z ~ N(0, I) → generator(z) → image", "num_inference_steps": None}


def _fmt_int(v: Any) -> str:
    """Thousands separators for ints, anything else as is."""
    return f"{v:,}" if isinstance(v, int) else str(v)


def write_markdown(card: dict[str, Any]) -> Path:
    """docs/zoo/NAME.md: the card rendered as a page."""
    name = card["name"]
    t = (card.get("training") or {}).get("training", {})
    env = (card.get("training") or {}).get("environment", {})
    q = card.get("quality") or {}
    if q.get("frechet_distance") is None:
        q = {}
    g = card["generator"]
    lines = [
        f"# Zoo model `{name}`",
        "",
        f"{card['summary']} ({card['family']}).",
        "",
        f"![64 samples of {name} (seed {SHEET_SEED})]({name}.png)",
        "",
        "| | |",
        "|---|---|",
        f"| generator inverted by verification | `{g['class']}`, latent shape `{tuple(g['latent_shape'])}` → "
        f"image `{tuple(g['image_shape'])}` in [0, 1]; encoder initialisation: {'yes' if g['has_encoder'] else 'no'} |",
        f"| parameters (generator) | {_fmt_int(g.get('parameters'))} |",
    ]
    for key, label in (
        ("discriminator_parameters", "discriminator: training only, not shipped"),
        ("critic_parameters", "critic: training only, not shipped"),
        ("encoder_parameters", "encoder: shipped, initialises the inversion"),
        ("autoencoder_parameters", "whole autoencoder, encoder + decoder"),
        ("latent_unet_parameters", "latent diffusion UNet: sampling only"),
    ):
        if key in t:
            lines.append(f"| parameters ({label}) | {_fmt_int(t[key])} |")
    s = card["sampling"]
    lines.append(
        f"| sampling | {s['procedure']}"
        + (f"; **{s['num_inference_steps']} DDIM steps**" if s.get("num_inference_steps") else "")
        + " |"
    )
    if t:
        if "autoencoder" in t:
            lines.append(
                f"| training | autoencoder {t['autoencoder']['steps']} steps "
                f"({t['autoencoder']['epochs']:.2f} epochs, {t['autoencoder']['seconds']:.0f} s) + latent "
                f"diffusion {t['latent_diffusion']['steps']} steps ({t['latent_diffusion']['epochs']:.2f} "
                f"epochs, {t['latent_diffusion']['seconds']:.0f} s) |"
            )
        elif "teacher_pairs" in t:
            lines.append(
                f"| training | {t['teacher_pairs']:,} teacher pairs ({t['teacher_seconds']:.0f} s to make), "
                f"{t['steps']} steps, {t['epochs']:.2f} epochs of them |"
            )
        else:
            lines.append(f"| training | {t['steps']} steps, {t['epochs']:.2f} epochs of the training data |")
        lines.append(
            f"| training time (measured here) | {t['seconds'] / 60:.1f} min on `{t['device']}` "
            f"({env.get('cpu_count')} CPU cores shared with other jobs, {env.get('torch_threads')} torch "
            f"thread(s), torch {env.get('torch')}) |"
        )
    ae = t.get("autoencoder")
    if ae:
        origin = f"reused from `{ae['from']}` (the same weights), which trained it" if "from" in ae else "stage 1"
        lines.append(
            f"| autoencoder | {origin}: {ae.get('steps', '?')} steps in {ae.get('seconds', 0) / 60:.1f} min; the "
            f"training time above {'excludes' if 'from' in ae else 'includes'} it |"
        )
    rec = card.get("autoencoder_reconstruction")
    if rec:
        lines.append(
            f"| autoencoder reconstruction | {rec['what']}: **{rec['heldout_psnr_db']:.2f} dB** on {rec['n']} held-out "
            f"photo crops, {rec['train_psnr_db']:.2f} dB on {rec['n']} training crops |"
        )
    lines.append(f"| seed | {card['seed']} |")
    if q:
        lines.append(
            f"| sample quality | Fréchet distance **{q['frechet_distance']:.2f}** between {q['n_samples']} samples "
            f"(seed {q['seed']}) and {q['n_reference']} real images ({q['reference']}) on {q['backbone']} "
            f"`{q['layer']}` features (real training data vs them: {q['fd_train_vs_test']:.2f}) |"
        )
    else:
        lines.append("| sample quality | not measured yet |")
    for f in card["weights"]["files"]:
        lines.append(f"| weights `{f['path']}` | {f['bytes']:,} bytes, sha256 `{f['sha256']}` |")
    lines += [
        "",
        "## Hyper-parameters",
        "",
        "```json",
        json.dumps(card["config"], indent=2),
        "```",
        "",
        "## Reproducing",
        "",
        "```python",
        "import imgorigin.zoo as zoo",
        "",
        f'zoo.train("{name}", "out_dir", device="cpu")  # or \'cuda\'',
        "```",
        "",
        card["reproducibility"],
        "",
    ]
    path = DOCS_DIR / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def write_index() -> Path:
    """docs/zoo/README.md: one table over all cards, plus the real-image contact sheet."""
    rows = []
    total = 0
    for name in list_models():
        if not card_path(name).is_file():
            rows.append(f"| [`{name}`]({name}.md) | not trained yet | | | | | |")
            continue
        card = json.loads(card_path(name).read_text())
        t = (card.get("training") or {}).get("training", {})
        q = card.get("quality") or {}
        q = q if q.get("frechet_distance") is not None else {}
        size = card["weights"]["folder_bytes"]
        total += size
        steps = card["sampling"].get("num_inference_steps") or "—"
        fd = f"{q['frechet_distance']:.2f}" if q else "not measured"
        rows.append(
            f"| [`{name}`]({name}.md) | {card['family']} | `{tuple(card['generator']['latent_shape'])}` | "
            f"{card['generator']['parameters']:,} | {t.get('seconds', 0) / 60:.1f} min | {steps} | {fd} | "
            f"{size / 1e6:.2f} MB |"
        )
    data_bytes = sum(p.stat().st_size for p in DATA_DIR.rglob("*") if p.is_file())
    lines = [
        "# Model zoo",
        "",
        "Small generators trained on Fashion-MNIST (28×28 grayscale), one distilled from another (`ddpm-one-step`) "
        "and one trained on crops of colour photos that ship with PyPI packages (`dcgan-rgb`, 64×64 RGB; "
        "`imgorigin.zoo.photos`), with the recipes in `src/imgorigin/zoo/` "
        "(architectures and loading; their training in `src/imgorigin/zoo/training/`); "
        "weights ship with the package under `src/imgorigin/zoo/weights/NAME/` together with a `card.json`. "
        "API: `imgorigin.zoo.list_models()`, `load(name)` (the generator verification inverts), "
        "`sample(name, n, seed)`, `train(name, out_dir, device)`, `model_card(name)`.",
        "",
        "| model | family | latent | parameters (generator) | training time | DDIM steps | FD ↓ | weights |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Shipped: {total / 1e6:.2f} MB of weights and configs + {data_bytes / 1e6:.2f} MB of data "
        f"(200 Fashion-MNIST test images, MIT).",
        "",
        "FD: Fréchet distance between 5 000 samples and the 10 000 test images on EfficientNet-Lite0 head features "
        "(1280-d, global average pool) — the FID formula on another backbone, comparable only within this table. "
        "Training times are wall-clock on a 2-core CPU machine shared with other jobs, so they are upper bounds.",
        "",
        "## Files and loading",
        "",
        "- `weights/NAME/card.json`: the model card (what `model_card(name)` returns); `docs/zoo/NAME.md` renders it.",
        "- GANs and VAE: plain safetensors state dicts (`generator.safetensors`; VAE `decoder.safetensors` + "
        "`encoder.safetensors`), loaded into the recipe's module.",
        "- `ddpm`: a diffusers folder (`unet/`, `scheduler/` with the DDIM settings, `model_index.json` of a "
        "`DDIMPipeline`), so `imgorigin verify src/imgorigin/zoo/weights/ddpm --ddim-steps 10` inverts the same "
        "chain as `zoo:ddpm` (without `--ddim-steps` the path loader uses its own default step count).",
        "- `ldm`: diffusers folders `vae/` (`AutoencoderKL`, scaling factor in its config), `unet/` (latent "
        "`UNet2DModel`) and `scheduler/`; `imgorigin verify src/imgorigin/zoo/weights/ldm/vae` inverts the same "
        "decoder as `zoo:ldm`.",
        "- Data: `src/imgorigin/zoo/data/fashion_mnist_test_subset.npz` (200 test images, 20 per class, with labels "
        "and test-split indices; MIT, see `LICENSE-fashion-mnist.txt`). Full splits: `imgorigin.zoo.data."
        "load_split('train' | 'test')` from the Debian package `dataset-fashion-mnist`.",
        "- Rebuilding everything shipped, from a checkout: `python tools/build_zoo_docs.py train NAME --threads 1`, "
        "then `python tools/build_zoo_docs.py fd NAME...` and `python tools/build_zoo_docs.py index` (see "
        "`tools/README.md`); the calibrations with `imgorigin zoo calibrate --out src/imgorigin/zoo/calibration`.",
        "",
        "Real test images (for comparison with the per-model contact sheets):",
        "",
        "![64 Fashion-MNIST test images](real.png)",
        "",
    ]
    path = DOCS_DIR / "README.md"
    path.write_text("\n".join(lines))
    return path


def cmd_train(name: str, device: str | None, threads: int | None) -> None:
    """Train ``name`` into the checkout's weights, then rebuild its card, page, contact sheet and the index."""
    from imgorigin.zoo import train

    if threads:
        torch.set_num_threads(threads)
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    stats = train(name, WEIGHTS_DIR, device=device)
    record = json.loads((WEIGHTS_DIR / name / "training.json").read_text())
    (WEIGHTS_DIR / name / "training.json").unlink()
    record["started_utc"] = started
    record["environment"] = environment()
    build_card(name, record)
    write_sheet(name)
    write_index()
    print(json.dumps(stats, indent=2))


def _test_stats(backbone, layer: str, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian fit of the test split's features, and of 5 000 train images (cached in ``cache``)."""
    from imgorigin.zoo.data import test_images, train_images

    key = f"{backbone.id}-{layer}"
    f = cache / f"fmnist-test-{key}.npz"
    if f.is_file():
        with np.load(f) as z:
            return z["mu"], z["sigma"], z["train_mu_sigma"]
    t = time.perf_counter()
    mu, sigma = gaussian_stats(image_features(test_images(), backbone, layer))
    g = torch.Generator().manual_seed(0)
    tr = train_images()
    tr = tr[torch.randperm(tr.shape[0], generator=g)[:FD_SAMPLES]]
    tmu, tsig = gaussian_stats(image_features(tr, backbone, layer))
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(f, mu=mu, sigma=sigma, train_mu_sigma=np.concatenate([tmu[None], tsig]))
    print(f"test-split features in {time.perf_counter() - t:.0f}s", flush=True)
    return mu, sigma, np.concatenate([tmu[None], tsig])


def _photo_stats(backbone, layer: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray, float, str]:
    """Gaussian fit of ``n`` held-out ``size``×``size`` photo crops' features and the FD of ``n`` training crops
    to them."""
    from imgorigin.zoo.photos import random_crops

    mu, sigma = gaussian_stats(image_features(random_crops("heldout", n, size, seed=0), backbone, layer))
    tmu, tsig = gaussian_stats(image_features(random_crops("train", n, size, seed=1), backbone, layer))
    return mu, sigma, frechet_distance(tmu, tsig, mu, sigma), f"{n} {size}×{size} crops of the held-out photos (seed 0)"


def cmd_fd(names: list[str], n: int, cache: Path, threads: int | None) -> None:
    """Measure the Fréchet distance of ``n`` samples of each model to its real reference (the Fashion-MNIST test
    split, or held-out photo crops for colour models, ``min(n, 2000)`` of them); write it into the cards."""
    from imgorigin.attribution.features import create_backbone

    if threads:
        torch.set_num_threads(threads)
    backbone = create_backbone(FD_BACKBONE)
    for name in names:
        photos = training_data(name) == "photos"
        if photos:
            n_model = min(n, 2000)
            size = get_recipe(name).config.image_size
            mu, sigma, fd_train, reference = _photo_stats(backbone, FD_LAYER, n_model, size)
            n_reference, note = n_model, f"{n_model} training-photo crops vs the held-out crops"
        else:
            n_model = n
            mu, sigma, train_ms = _test_stats(backbone, FD_LAYER, cache)
            fd_train = frechet_distance(train_ms[0], train_ms[1:], mu, sigma)
            reference, n_reference = "Fashion-MNIST test split", 10000
            note = f"{FD_SAMPLES} random train images vs the test split"
        t = time.perf_counter()
        images = sample(name, n_model, seed=FD_SEED, weights=WEIGHTS_DIR)
        t_sample = time.perf_counter() - t
        smu, ssig = gaussian_stats(image_features(images, backbone, FD_LAYER))
        fd = frechet_distance(smu, ssig, mu, sigma)
        card = json.loads(card_path(name).read_text())
        card["quality"] = {
            "frechet_distance": fd,
            "n_samples": n_model,
            "seed": FD_SEED,
            "n_reference": n_reference,
            "reference": reference,
            "backbone": backbone.id,
            "layer": FD_LAYER,
            "preprocess": backbone.preprocess_id,
            "fd_train_vs_test": fd_train,
            "fd_train_vs_test_note": note,
            "sampling_seconds": t_sample,
        }
        write_json(card_path(name), card)
        write_markdown(card)
        print(f"{name}: FD {fd:.3f} (train-vs-reference {fd_train:.3f}); sampling {t_sample:.0f}s", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the sub-command and run it."""
    ap = argparse.ArgumentParser(
        prog="python tools/build_zoo_docs.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("name", choices=list_models())
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    sub.add_parser("index")
    p = sub.add_parser("card")
    p.add_argument("names", nargs="+")
    p = sub.add_parser("sheet")
    p.add_argument("names", nargs="+")
    p = sub.add_parser("fd")
    p.add_argument("names", nargs="+")
    p.add_argument("--n", type=int, default=FD_SAMPLES)
    p.add_argument("--cache", type=Path, default=default_cache_dir() / "zoo-fd")
    p.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if Path(imgorigin.__file__).resolve().parent != PACKAGE_DIR:
        print(
            f"note: imgorigin is imported from {Path(imgorigin.__file__).parent}, not from this checkout's "
            f"{PACKAGE_DIR}; the recipes used are the installed ones (pip install -e . to use the checkout's)",
            file=sys.stderr,
        )
    if a.cmd == "train":
        cmd_train(a.name, a.device, a.threads)
    elif a.cmd == "index":
        print(write_index())
    elif a.cmd == "card":
        for name in a.names:
            build_card(name)
    elif a.cmd == "sheet":
        for name in a.names:
            print(write_sheet(name))
    elif a.cmd == "fd":
        cmd_fd(a.names, a.n, a.cache, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
