"""The training-free fast path: AEDR's double-reconstruction score for models with an encoder (below), and the
denoising profile for pixel diffusion models (:mod:`imgorigin.verification.profile`), under one config.

AEDR (AAAI 2026, code ``wangchao0708/AEDR``): reconstruct the image twice with the model's own autoencoder,
``x → r1 = D(E(x)) → r2 = D(E(r1))``, and score ``d(x, r1) / d(r1, r2) × H(x)``, H the GLCM homogeneity of
the image. An image the decoder made lies on the decoder's manifold, so its first round trip loses about as much
as the second (ratio near 1); a real image or another model's loses more on the first trip, where it is pulled
onto the manifold, than on the second (ratio above 1). The homogeneity factor damps the score of busy images
(low homogeneity), whose first-trip loss is high for every source.

Small score = like the model, so the score plugs into the same conformal p-value as the inversion loss,
against the fast scores of the model's own samples (a calibration of method ``double-reconstruction``).
No optimisation: two encoder and two decoder passes per image.

Differences from AEDR's code (not in the paper): the encoder's posterior mean instead of a posterior sample
(deterministic scores, so caching and the conformal rank are exact); GLCM homogeneity written in numpy
(AEDR uses scikit-image: grey levels // 8 → 32 levels, horizontal neighbours at distance 1, symmetric,
normalised; with a symmetric matrix and a symmetric weight that is the mean of 1 / (1 + (a − b)²) over all
horizontal neighbour pairs, which is what :func:`glcm_homogeneity` computes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np
import torch

from imgorigin.errors import UsageError
from imgorigin.images import uint8_codes
from imgorigin.verification.distances import get_distance
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.profile import PROFILE, ProfileScores, denoising_profile, require_diffusion
from imgorigin.verification.profile import RECORD_METHOD as PROFILE_RECORD_METHOD

#: ``Calibration.method`` of a calibration made of fast scores (the default, ``inversion``, is the inversion's).
FAST = "double-reconstruction"
INVERSION = "inversion"
#: ``method`` field of records decided by the fast score (inversion records say ``ronan-inversion``).
RECORD_METHOD = "aedr-double-reconstruction"
#: Added to the second-trip loss so a reconstruction that is an exact fixed point gives a finite ratio.
EPS = 1e-12
#: ITU-R BT.601 luma weights, as OpenCV's grayscale conversion in AEDR's code.
LUMA = (0.299, 0.587, 0.114)


#: The training-free scores a fast calibration can hold (``FastConfig.score``).
FAST_SCORES = (FAST, PROFILE)
#: The record ``method`` of decisions made by each fast score.
RECORD_METHODS = {FAST: RECORD_METHOD, PROFILE: PROFILE_RECORD_METHOD}
#: Settings of each score, as written to files (the others keep their defaults and stay out of the file).
_SCORE_FIELDS = {
    FAST: ("distance", "homogeneity", "batch_size"),
    PROFILE: ("score", "timesteps", "draws", "seed", "saturation", "batch_size", "profile"),
}


@dataclass(frozen=True)
class FastConfig:
    """Settings of a training-free score; stored in fast calibration files and reused by verify.

    ``score``: ``double-reconstruction`` (AEDR, models with an encoder: ``distance``, ``homogeneity``) or
    ``denoising-profile`` (pixel diffusion models, :mod:`imgorigin.verification.profile`: ``timesteps``,
    ``draws``, ``seed``, ``saturation``, and ``profile``, the statistics fitted on the model's own samples).
    """

    score: str = FAST
    distance: str = "mse"
    #: Multiply the loss ratio by the image's GLCM homogeneity (AEDR's factor).
    homogeneity: bool = True
    #: Images scored at once (bounds memory).
    batch_size: int = 64
    #: Training timesteps at which the profile measures the UNet's ε-prediction error.
    timesteps: tuple[int, ...] = (1, 2, 5, 10, 20)
    #: Noise draws per timestep (the same draws for every image).
    draws: int = 8
    seed: int = 0
    #: Pixels with |x| at or above this (UNet space, [-1, 1]) form the profile's "saturated" part.
    saturation: float = 0.9
    #: The fitted profile (:func:`~imgorigin.verification.profile.fit_profile`); None until calibration fits it.
    profile: dict | None = None

    def __post_init__(self) -> None:
        if self.score not in FAST_SCORES:
            raise ValueError(f"fast score must be one of {', '.join(FAST_SCORES)}, not {self.score!r}")
        get_distance(self.distance)
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        object.__setattr__(self, "timesteps", tuple(int(t) for t in self.timesteps))
        if not self.timesteps or min(self.timesteps) < 0 or self.draws < 1 or not 0 < self.saturation <= 1:
            raise ValueError("the profile needs timesteps >= 0, draws >= 1 and saturation in (0, 1]")

    @property
    def is_profile(self) -> bool:
        """Whether this is the denoising-profile score."""
        return self.score == PROFILE

    def to_dict(self) -> dict:
        """Plain dict for JSON: the settings of this score only (double-reconstruction files keep their form)."""
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items() if k in _SCORE_FIELDS[self.score]}

    @classmethod
    def from_dict(cls, data: dict) -> FastConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fast-path settings {sorted(unknown)}")
        return cls(**data)

    def cache_settings(self) -> dict:
        """What keys the score cache: the method and every setting (never equal to an inversion's key)."""
        return {"method": self.score, **self.to_dict()}


def require_encoder(generator: Generator) -> None:
    """Refuse a model that cannot reconstruct: the fast path needs an encoder."""
    if not generator.has_encoder:
        raise UsageError(
            f"model {generator.id} has no encoder: the fast path (double reconstruction) needs one; "
            "use --method inversion"
        )


def require_fast(generator: Generator, config: FastConfig) -> None:
    """Refuse a model the fast score of ``config`` cannot be computed for, naming what it needs."""
    if config.is_profile:
        require_diffusion(generator)
    else:
        require_encoder(generator)


def glcm_homogeneity(images: torch.Tensor) -> np.ndarray:
    """GLCM homogeneity of each image ``[N, C, H, W]`` in [0, 1]: 8-bit grey (BT.601 luma for RGB) // 8 → 32
    levels, horizontal neighbours at distance 1, symmetric and normalised (AEDR's settings). 1 = flat image."""
    codes = uint8_codes(images).to(torch.float64)
    weights = torch.tensor(LUMA if codes.shape[1] == 3 else [1 / codes.shape[1]] * codes.shape[1], dtype=codes.dtype)
    grey = torch.einsum("nchw,c->nhw", codes, weights).round()
    levels = torch.div(grey, 8, rounding_mode="floor")
    diff = levels[:, :, 1:] - levels[:, :, :-1]
    return (1.0 / (1.0 + diff.pow(2))).flatten(1).mean(1).numpy()


class FastScores(NamedTuple):
    """Per-image fast scores and their parts: d(x, r1), d(r1, r2), homogeneity."""

    scores: np.ndarray
    first: np.ndarray
    second: np.ndarray
    homogeneity: np.ndarray

    def parts(self, k: int) -> dict:
        """Image ``k``'s components as a record's ``score_parts``."""
        parts = ("first", "second", "homogeneity")
        return {name: float(getattr(self, name)[k]) for name in parts}


@torch.no_grad()
def reconstruct(generator: Generator, images: torch.Tensor) -> torch.Tensor:
    """One round trip through the model's autoencoder: ``D(E(x))`` in [0, 1]."""
    z = generator.encode(images.to(generator.device, torch.float32))
    return generator.decode(z).clamp(0, 1)


@torch.no_grad()
def double_reconstruction(generator: Generator, images: torch.Tensor, config: FastConfig | None = None) -> FastScores:
    """The fast score of each image ``[N, C, H, W]`` in [0, 1]: ``d(x, r1) / d(r1, r2)`` (× homogeneity)."""
    require_encoder(generator)
    config = config or FastConfig()
    distance = get_distance(config.distance)
    first, second = [], []
    for chunk in images.split(config.batch_size):
        x = chunk.to(generator.device, torch.float32)
        r1 = reconstruct(generator, x)
        r2 = reconstruct(generator, r1)
        first.append(distance(r1, x).double().cpu())
        second.append(distance(r2, r1).double().cpu())
    d1 = torch.cat(first).numpy() if first else np.empty(0)
    d2 = torch.cat(second).numpy() if second else np.empty(0)
    h = glcm_homogeneity(images) if images.shape[0] else np.empty(0)
    scores = d1 / (d2 + EPS)
    if config.homogeneity:
        scores = scores * h
    return FastScores(scores, d1, d2, h)


def fast_scores(generator: Generator, images: torch.Tensor, config: FastConfig) -> FastScores | ProfileScores:
    """The training-free score ``config.score`` of each image ``[N, C, H, W]`` in [0, 1], with its parts."""
    if config.is_profile:
        return denoising_profile(generator, images, config)
    return double_reconstruction(generator, images, config)
