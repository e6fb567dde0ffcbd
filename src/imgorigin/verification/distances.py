"""Per-image reconstruction distances ``d(reconstruction, target) -> [B]`` for the inversion engine.

MSE on [0, 1] pixels is the paper's choice and the default; L1 and SSIM are the alternatives. Each is named in
:data:`DISTANCES`, so a calibration file names the distance it used. Every distance returns one value per row
so rows can act as restarts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mse(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image."""
    return (recon - target).pow(2).flatten(1).mean(1)


def l1(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image."""
    return (recon - target).abs().flatten(1).mean(1)


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_distance(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − SSIM per image (Wang et al. 2004: Gaussian window 11, σ 1.5, K1 0.01, K2 0.03, data range 1)."""
    channels, height, width = recon.shape[1:]
    size = min(11, height - (1 - height % 2), width - (1 - width % 2))
    window = _gaussian_window(size, 1.5, channels, recon)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(recon), blur(target)
    var_x = blur(recon * recon) - mu_x**2
    var_y = blur(target * target) - mu_y**2
    cov = blur(recon * target) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return 1 - ssim_map.flatten(1).mean(1)


DISTANCES: dict[str, Distance] = {"mse": mse, "l1": l1, "ssim": ssim_distance}


def get_distance(name: str) -> Distance:
    """The distance registered under ``name`` (``mse``, ``l1``, ``ssim``)."""
    try:
        return DISTANCES[name]
    except KeyError:
        raise ValueError(f"unknown distance {name!r}; choose one of {sorted(DISTANCES)}") from None
