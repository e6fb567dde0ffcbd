"""Fine detail against the model's own images: catches low-pass processing that the file does not show.

Resizing an image down and back up, or blurring it, and saving it as PNG at the model's size leaves no trace in
the file, yet it moves a member's reconstruction score far from the calibration's (measured with
``imgorigin bench robustness``: the zoo DCGAN's members went from 97 % accepted to 0 %, all called
``non-member``). What it does leave is the spectrum: a 2x downscale removes every frequency above a quarter
cycle per pixel. So each image's share of (mean-removed) spectral energy in that upper band is compared with
the same share in the model's own samples; an image with less fine detail than nearly all of them is outside
what the calibration covers, and the verifier calls it ``inconclusive`` instead of giving a verdict whose
error rates do not hold for it.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from imgorigin.images import quantize_8bit
from imgorigin.verification.generators.base import Generator

#: Frequencies above this (cycles per pixel, along either axis) are what a 2x downscale removes.
UPPER_BAND = 0.25
#: Seed of the model samples the reference is drawn from (any fixed seed: the reference must be reproducible).
REFERENCE_SEED = 7919
#: Version of the statistic, part of the on-disk cache key: a change to it must not reuse old references.
STATISTIC = "upper-band-energy/1"
#: References already built in this process, by weights, shape, n and statistic.
_REFERENCES: dict[str, DetailReference] = {}
#: The default level of the check (``Verifier(detail_alpha=...)``, ``--detail-alpha``): see DetailReference.
DEFAULT_ALPHA = 1e-3
#: Fractions are compared in log space no finer than this (a flat image has none; it is flagged elsewhere).
FLOOR = 1e-12


def upper_band_fraction(images: torch.Tensor) -> np.ndarray:
    """Per image ``[N, C, H, W]``: the fraction of its non-constant spectral energy above :data:`UPPER_BAND`
    cycles per pixel (max over the two axes), averaged over channels. A flat image gives 0."""
    x = images.detach().to(torch.float64).cpu()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs() ** 2
    height, width = x.shape[-2:]
    freq = torch.maximum(torch.fft.fftfreq(height).abs()[:, None], torch.fft.fftfreq(width).abs()[None, :])
    total = power.sum(dim=(-2, -1))
    upper = (power * (freq > UPPER_BAND)).sum(dim=(-2, -1))
    fraction = torch.where(total > 0, upper / total.clamp_min(1e-300), torch.zeros_like(total))
    return fraction.mean(dim=1).numpy()


class DetailReference:
    """The upper-band fractions of ``n`` of the model's own images (8-bit quantised, as saved PNGs would be), and
    the probability of an image of the model having as little fine detail as a given one.

    The probability is a log-normal tail fitted to the reference, not a rank: a rank p-value cannot go below
    1 / (n + 1), so a level that flags low-passed images would also flag the model's own smoothest one in every
    few hundred. Measured on 2,000 fresh samples of each grayscale zoo GAN, VAE and LDM at level 1e-3: 0–0.3 % of
    the model's own images flagged; 90–100 % of DCGAN, WGAN-GP and LDM members resized 0.5x and back; 30 % for the
    VAE, whose own images are already smooth (``imgorigin bench robustness``).
    """

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.sort(np.asarray(values, dtype=np.float64))
        if self.values.size < 2:
            raise ValueError("a detail reference needs at least 2 images")
        logs = np.log(np.maximum(self.values, FLOOR))
        self.mean, self.std = float(logs.mean()), float(max(logs.std(ddof=1), 1e-6))

    @classmethod
    def from_generator(
        cls, generator: Generator, n: int, *, cache_dir: str | Path | None = None, weight_hash: str | None = None
    ) -> DetailReference:
        """Sample ``n`` images from the model (seed :data:`REFERENCE_SEED`), once per process for the same weights,
        shape and ``n`` (every verifier of a model, e.g. one per α, shares it); with ``cache_dir`` the values are
        also kept on disk, so only the first run pays for sampling."""
        weights = weight_hash or generator.weight_hash()
        key = hashlib.sha256(f"{weights}|{generator.image_shape}|{n}|{STATISTIC}".encode()).hexdigest()
        if key in _REFERENCES:
            return _REFERENCES[key]
        path = None if cache_dir is None else Path(cache_dir) / "detail" / f"{key[:32]}.npy"
        _REFERENCES[key] = reference = cls._sampled(generator, n, path)
        return reference

    @classmethod
    def _sampled(cls, generator: Generator, n: int, path: Path | None) -> DetailReference:
        """The reference from the file at ``path`` when it holds one, else sampled (and written there)."""
        if path is not None:
            try:
                values = np.load(path)
                if values.shape == (n,) and np.all(np.isfinite(values)):
                    return cls(values)
            except (OSError, ValueError):
                pass  # absent or corrupt: sample again and overwrite
        values = upper_band_fraction(quantize_8bit(generator.sample(n, seed=REFERENCE_SEED)))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, values)
            tmp.replace(path)
        return cls(values)

    def p_value(self, image: torch.Tensor) -> float:
        """P(an image of the model has at most this image's upper-band fraction), for one image ``[C, H, W]``,
        under the log-normal fitted to the reference: small when it is smoother than the model's images."""
        value = max(float(upper_band_fraction(image[None])[0]), FLOOR)
        return 0.5 * math.erfc(-(math.log(value) - self.mean) / (self.std * math.sqrt(2)))
