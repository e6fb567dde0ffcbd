"""The training-free fast path for models with an encoder: AEDR's double-reconstruction score.

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

#: ``Calibration.method`` of a calibration made of fast scores (the default, ``inversion``, is the inversion's).
FAST = "double-reconstruction"
INVERSION = "inversion"
#: ``method`` field of records decided by the fast score (inversion records say ``ronan-inversion``).
RECORD_METHOD = "aedr-double-reconstruction"
#: Added to the second-trip loss so a reconstruction that is an exact fixed point gives a finite ratio.
EPS = 1e-12
#: ITU-R BT.601 luma weights, as OpenCV's grayscale conversion in AEDR's code.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class FastConfig:
    """Settings of the double-reconstruction score; stored in fast calibration files and reused by verify."""

    distance: str = "mse"
    #: Multiply the loss ratio by the image's GLCM homogeneity (AEDR's factor).
    homogeneity: bool = True
    #: Images encoded/decoded at once (bounds memory).
    batch_size: int = 64

    def __post_init__(self) -> None:
        get_distance(self.distance)
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FastConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fast-path settings {sorted(unknown)}")
        return cls(**data)

    def cache_settings(self) -> dict:
        """What keys the score cache: the method and every setting (never equal to an inversion's key)."""
        return {"method": FAST, **self.to_dict()}


def require_encoder(generator: Generator) -> None:
    """Refuse a model that cannot reconstruct: the fast path needs an encoder."""
    if not generator.has_encoder:
        raise UsageError(
            f"model {generator.id} has no encoder: the fast path (double reconstruction) needs one; "
            "use --method inversion"
        )


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
