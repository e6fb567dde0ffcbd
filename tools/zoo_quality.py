"""Sample quality of the zoo models for their cards (used by build_zoo_docs.py fd): Fréchet distance between
Gaussian fits of backbone features.

FD(N(μ1, Σ1), N(μ2, Σ2)) = |μ1 − μ2|² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2})  — the FID formula, here on
EfficientNet-Lite0 features (globally average-pooled 1280-d head by default) because no Inception weights
are available offline; numbers are therefore not comparable with published FIDs, only between zoo models.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

#: Backbone and layer used for the FD figures in the model cards.
FD_BACKBONE = "efficientnet-lite0"
FD_LAYER = "head"


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and (unbiased) covariance ``[D, D]`` of features ``[N, D]``, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features of shape [N >= 2, D], got {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    w, v = scipy.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((Σ1 Σ2)^{1/2}) for covariance matrices.

    Σ1 Σ2 is similar to the symmetric PSD matrix S Σ2 S with S = Σ1^{1/2}, so the trace of its square root is
    the sum of the square roots of that matrix's (non-negative) eigenvalues. This is the quantity pytorch-fid
    gets from ``scipy.linalg.sqrtm(Σ1 @ Σ2)``, without sqrtm's complex round-off and singular-matrix failures.
    """
    s = _psd_sqrt(sigma1)
    m = s @ sigma2 @ s
    w = scipy.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (squared 2-Wasserstein distance)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2)
    fd = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
    return max(fd, 0.0)


def frechet_distance_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets ``[N1, D]`` and ``[N2, D]``."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2))


def image_features(images: torch.Tensor, backbone=None, layer: str = FD_LAYER, batch_size: int = 100) -> np.ndarray:
    """Backbone features ``[N, D]`` of images ``[N, C, H, W]`` in [0, 1] (EfficientNet-Lite0 head by default)."""
    if backbone is None:
        from imgorigin.attribution.features import create_backbone

        backbone = create_backbone(FD_BACKBONE)
    return backbone.embed(images, layer=layer, batch_size=batch_size)
