"""The training-free score for pixel diffusion models: the denoising profile of an image under the model's own UNet.

Inversion through a pixel DDPM's DDIM chain does not find its members again (x_T ∈ R^{H·W·C} through ten UNet
calls: the chain fits smooth real images better than its own samples; README, zoo benchmark). What does tell a
model's own outputs apart is how its denoiser sees them. An image's *profile* is a short feature vector, all of it
the model's own computation on the image:

* the mean squared ε-prediction error of the UNet on the image noised to each of a few small timesteps (fixed
  noise draws, the same for every image), measured separately on the pixels at the ends of the value range
  (``|x| ≥ saturation`` in the UNet's [-1, 1]) and on the rest — the diffusion loss, an ELBO term, split where a
  sampler that clips its x_0 prediction leaves its trace;
* the Gaussian atypicality and the energy of x_T from DDIM inversion over the sampler's own timesteps
  (:func:`~imgorigin.verification.diffusion.gaussian_atypicality`).

The score is the squared Mahalanobis distance of the image's log-profile from the profiles of the model's own
samples (Ledoit–Wolf covariance, fitted on part of the calibration samples; the calibration keeps the distances
of the others), so "small = like the model" and the conformal p-value works as for every other score. No
optimisation: ``draws × len(timesteps)`` UNet calls plus one DDIM inversion per image.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from imgorigin.errors import UsageError
from imgorigin.verification.diffusion import error_maps, fixed_noise, gaussian_atypicality
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.generators.ddim import DDIMGenerator

if TYPE_CHECKING:
    from imgorigin.verification.fastpath import FastConfig

#: ``Calibration.method`` and ``FastConfig.score`` of this score.
PROFILE = "denoising-profile"
#: The record ``method`` of decisions made with it.
RECORD_METHOD = "denoising-profile"
#: Share of a profile calibration's samples the profile is fitted on; the distances of the rest are its scores.
PROFILE_SHARE = 0.6
#: Floor under the x_T atypicality before its logarithm (a perfectly typical x_T scores 0).
ATYPICALITY_FLOOR = 1e-3


class ProfileScores(NamedTuple):
    """Per-image Mahalanobis distances and the log-profiles ``[N, F]`` they came from."""

    scores: np.ndarray
    features: np.ndarray
    names: list[str]

    def parts(self, k: int) -> dict:
        """Image ``k``'s profile as a record's ``score_parts`` (feature name → log value)."""
        return {name: float(v) for name, v in zip(self.names, self.features[k], strict=True)}


def require_diffusion(generator: Generator) -> DDIMGenerator:
    """The pixel diffusion generator itself; a clear error for any other model."""
    if not isinstance(generator, DDIMGenerator):
        raise UsageError(
            f"model {generator.id} is not a pixel diffusion model (UNet + DDIM sampler): the denoising profile "
            "needs one; use --method inversion"
        )
    return generator


def feature_names(timesteps: tuple[int, ...]) -> list[str]:
    """Names of the profile's features, in order."""
    return [f"{part}@{t}" for t in timesteps for part in ("saturated", "interior")] + ["xT-atypicality", "xT-energy"]


def _masked_mean(errors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``errors`` over ``mask`` per image, with one pseudo-pixel at the image's overall mean error (so an
    image without such pixels gets its overall mean, not a division by zero)."""
    overall = errors.flatten(1).mean(1)
    return ((errors * mask).flatten(1).sum(1) + overall) / (mask.flatten(1).sum(1) + 1)


@torch.no_grad()
def profile_features(generator: Generator, images: torch.Tensor, config: FastConfig) -> np.ndarray:
    """The log-profile ``[N, F]`` of images ``[N, C, H, W]`` in [0, 1] under ``config``'s profile settings
    (features named by :func:`feature_names`)."""
    gen = require_diffusion(generator)
    rows = []
    alphas = gen.scheduler.alphas_cumprod.to(gen.device, torch.float32)
    noise = fixed_noise(gen.image_shape, config.draws, config.seed, gen.device)
    for chunk in images.split(config.batch_size):
        x = chunk.to(gen.device, torch.float32) * 2 - 1
        saturated = (x.abs() >= config.saturation).to(x.dtype)
        columns = []
        for t in config.timesteps:
            errors = error_maps(gen.unet, alphas, x, t, noise)
            columns += [_masked_mean(errors, saturated), _masked_mean(errors, 1 - saturated)]
        x_t = gen.encode(chunk.to(gen.device, torch.float32))
        columns.append(torch.as_tensor(gaussian_atypicality(x_t), device=x.device).clamp_min(ATYPICALITY_FLOOR))
        columns.append(x_t.pow(2).flatten(1).mean(1))
        rows.append(torch.stack([c.double().log() for c in columns], 1).cpu())
    width = len(feature_names(config.timesteps))
    return torch.cat(rows).numpy() if rows else np.empty((0, width))


def fit_profile(features: np.ndarray) -> dict:
    """The profile of a model's own samples: the log-profiles' mean and Ledoit–Wolf precision, JSON-ready."""
    from sklearn.covariance import LedoitWolf

    if features.shape[0] < features.shape[1] + 2:
        raise ValueError(
            f"fitting a denoising profile of {features.shape[1]} features needs at least {features.shape[1] + 2} "
            f"samples, got {features.shape[0]}"
        )
    fit = LedoitWolf().fit(features)
    return {"n_fit": int(features.shape[0]), "mean": fit.location_.tolist(), "precision": fit.precision_.tolist()}


def fitted(generator: Generator, config: FastConfig, samples: torch.Tensor) -> FastConfig:
    """``config`` with its profile fitted on the model's own ``samples`` ``[N, C, H, W]`` in [0, 1]."""
    return dataclasses.replace(config, profile=fit_profile(profile_features(generator, samples, config)))


def mahalanobis(features: np.ndarray, profile: dict) -> np.ndarray:
    """Squared Mahalanobis distance of each log-profile from a fitted profile (non-finite features: inf)."""
    centred = features - np.asarray(profile["mean"])
    d = np.einsum("ij,jk,ik->i", centred, np.asarray(profile["precision"]), centred)
    return np.where(np.all(np.isfinite(features), axis=1), d, math.inf)


def denoising_profile(generator: Generator, images: torch.Tensor, config: FastConfig) -> ProfileScores:
    """The denoising-profile score of each image against ``config.profile`` (fitted: :func:`fitted`) and its
    log-profile."""
    if config.profile is None:
        raise ValueError("the denoising-profile score needs a fitted profile (a calibration's)")
    features = profile_features(generator, images, config)
    return ProfileScores(mahalanobis(features, config.profile), features, feature_names(config.timesteps))
