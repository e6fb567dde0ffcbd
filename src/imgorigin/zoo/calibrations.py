"""Calibration files shipped with the zoo, so `imgorigin verify zoo:NAME ...` needs no calibrate step.

Shipped files are read from the package (:func:`calibration_dir`); ``imgorigin zoo calibrate`` makes new ones
the same way (:func:`calibrate_shipped`) into :func:`output_dir`, which is never the installed package unless a
maintainer names it (``--out src/imgorigin/zoo/calibration``).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from imgorigin.runtime import default_cache_dir
from imgorigin.verification.calibration import CalibrationError
from imgorigin.verification.inversion import EARLIER_REFINEMENT

if TYPE_CHECKING:
    import torch

    from imgorigin.verification.calibration import Calibration
    from imgorigin.verification.inversion import InversionConfig

#: Samples per shipped calibration (the issue's and the paper's protocol: the model's own images).
SHIPPED_SAMPLES = 200
#: Zoo models shipped without a calibration, and why (named in the error a user gets).
NOT_CALIBRATED: dict[str, str] = {
    "ddpm-one-step": "verification does not work on it yet: inverting its 784-value input noise reconstructs real "
    "images better than its own samples (16 each: AUROC 0.38 with Adam, members median MSE 1.2e-3; with the "
    "matrix-free Gauss-Newton refinement members 7.5e-5, real 3.9e-5; benchmarks/one_step_probe.py), and so does "
    "Levenberg-Marquardt on the exact Jacobian (members 1.9e-5, real 1.3e-5), which finds a member again only from "
    "within about 0.2 sd of its own noise (benchmarks/one_step_identifiability.py)",
    **{
        name: "on its strong autoencoder no score here tells its images from the other model on the same autoencoder "
        "(benchmark AUROC 0.42-0.70), and the best against real crops accepts 20-28 % of them at alpha = 0.05 "
        "(AUROC 0.92-0.95; README, colour latent diffusion), so a calibration would not decide what it says"
        for name in ("ldm-rgb-strong", "ldm-rgb-strong-b")
    },
    "dcgan-rgb": "its calibration needs the learned initialiser `imgorigin calibrate` trains (about 7 min on 2 CPU "
    "cores; 99-100 of 100 samples at the 8-bit floor, where search starts left 29 %), and the file it makes (3.4 MB, "
    "the initialiser's weights) is not shipped",
}
#: Seed of the calibration samples; benchmarks draw members with other seeds so they never overlap.
SHIPPED_SEED = 1_000


#: The calibrations shipped before the refinement's defaults changed (100 iterations, patience 10, tolerance
#: 10 %: members of the 64×64 RGB DCGAN converge linearly for 30–100 iterations) keep the settings they were made
#: with (``EARLIER_REFINEMENT``: 60 iterations, patience 5, tolerance 1 %), so their scores stay valid.
#: Inversion settings that differ from the defaults, per zoo model (stored in its calibration file, so
#: `verify` reuses them). wgangp (upsample + conv, ReLU): Levenberg–Marquardt converges slowly across
#: activation kinks, so it gets fresh Jacobians, more patience and more restarts. Measured on 48 members vs
#: 48 real / 48 other-GAN images: defaults AUROC 0.91, these 0.9965 / 0.9987 at ~1.6 s per image (2 cores).
#: Even so about 5 % of its members end in a wrong basin (5 of 100, MSE 3e-5 to 3e-3, where non-members
#: are), which puts the α = 0.05 threshold among the non-members; a second and third attempt from fresh
#: starts brought 4 of those 5 to the 8-bit floor, so failed attempts (above 1e-5) are retried twice.
LATENT_TRACER = {"init": "encoder", "restarts": 1, "steps": 100}
INVERSION_OVERRIDES: dict[str, dict] = {
    "dcgan": EARLIER_REFINEMENT,
    "dcgan-twin": EARLIER_REFINEMENT,
    "vae": EARLIER_REFINEMENT,
    "ldm": EARLIER_REFINEMENT,
    "wgangp": {
        "restarts": 8,
        "refine_steps": 100,
        "refine_broyden": 0,
        "refine_patience": 10,
        "refine_rel_tol": 1e-2,
        "retries": 2,
    },
    # the colour latent models: decoder inversion as LatentTracer runs it, one start at the encoder's latent and
    # 100 Adam steps (4 restarts and 200 steps cost 8-9 s per 32×32 image on the 4×32×32 latent, 2 cores); on the
    # strong pair at LatentTracer's own learning rate, 0.05: at the default 0.2 Adam overshoots the encoder's start,
    # which is already within 4 % of a member's latent (benchmarks/strong_latent_probe.py)
    "ldm-rgb": LATENT_TRACER,
    **{name: {**LATENT_TRACER, "lr": 0.05} for name in ("ldm-rgb-strong", "ldm-rgb-strong-b")},
}


#: Zoo models whose shipped calibration holds a training-free score instead of inversion losses, and how many of
#: their samples it is made of. ddpm: inversion through its DDIM chain reconstructs real images better than its own
#: samples (AUROC 0.05); its denoising profile, fitted on 600 samples and calibrated on 400, separates them
#: (README, pixel diffusion).
FAST_CALIBRATIONS: dict[str, tuple[dict, int]] = {"ddpm": ({"score": "denoising-profile"}, 1000)}


def inversion_config(name: str) -> InversionConfig:
    """The inversion settings of zoo model ``name``'s shipped calibration."""
    from imgorigin.verification.inversion import InversionConfig

    return InversionConfig(**INVERSION_OVERRIDES.get(name, {}))


def shipped_inversion(name: str) -> InversionConfig:
    """The inversion settings ``verify zoo:NAME`` uses: its shipped calibration's (retries chosen by the
    calibration included), else :func:`inversion_config`."""
    from imgorigin.verification.calibration import Calibration

    path = calibration_dir() / f"{name}.json"
    if name in NOT_CALIBRATED or not path.is_file():
        return inversion_config(name)
    return Calibration.load(path).inversion


def calibration_dir() -> Path:
    """Folder of the shipped calibration files (``NAME.json``)."""
    return Path(str(resources.files(__package__) / "calibration"))


def calibration_path(name: str) -> Path:
    """The shipped calibration of zoo model ``name``; a clear error when it is missing."""
    from imgorigin.zoo import get_recipe

    get_recipe(name)
    path = calibration_dir() / f"{name}.json"
    if name in NOT_CALIBRATED:
        raise CalibrationError(
            f"zoo:{name} ships without a calibration: {NOT_CALIBRATED[name]}. To try it anyway: "
            f"`imgorigin calibrate zoo:{name} --out CAL` and pass --calibration CAL"
        )
    if not path.is_file():
        raise CalibrationError(
            f"no shipped calibration for zoo:{name} at {path}; make one with "
            f"`imgorigin calibrate zoo:{name} --out CAL` and pass --calibration CAL"
        )
    return path


def output_dir(out: str | os.PathLike | None = None) -> Path:
    """Where ``imgorigin zoo calibrate`` writes: ``out``, else ``<cache>/zoo-calibration`` (never the package)."""
    return Path(out) if out is not None else default_cache_dir() / "zoo-calibration"


def calibrate_shipped(name: str, device: str | torch.device = "cpu", progress: bool = False) -> Calibration:
    """A new calibration of zoo model ``name`` made as the shipped one was: its settings, sample count and seed."""
    from imgorigin.verification.verifier import calibrate
    from imgorigin.zoo import load

    model = load(name, device=device)
    if name in FAST_CALIBRATIONS:
        from imgorigin.verification.fastpath import FastConfig

        settings, n = FAST_CALIBRATIONS[name]
        fast = FastConfig.from_dict(settings)
        return calibrate(model, n, config=fast, seed=SHIPPED_SEED, progress=progress)
    config = inversion_config(name)  # made before the learned initialiser: search starts
    return calibrate(model, SHIPPED_SAMPLES, config=config, seed=SHIPPED_SEED, progress=progress, learned_init=False)
