"""A weight-free frequency fingerprint: the log-magnitude spectrum of an image's high-pass residual.

Generators leave periodic traces (up-sampling grids, denoiser residue) that show as peaks in the Fourier
spectrum of the noise residual (Marra et al. 2019, Zhang et al. 2019, Frank et al. 2020). The residual is
the grey image minus its 3x3 median; its 2-D FFT log-magnitude (centred) is average-pooled to a fixed
32x32 grid, so every image size gives the same length. Images larger than 256 pixels on a side are
centre-cropped to 256 first (a crop keeps the pixel grid, unlike a resize, and bounds the cost).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from imgorigin.attribution.features.base import Backbone, to_rgb_batch

GRID = 32
MAX_SIDE = 256
RADIAL_BINS = GRID // 2


def median_residual(grey: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] minus its 3x3 median (edge-replicated): the high-pass noise residual."""
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    patches = padded.unfold(2, 3, 1).unfold(3, 3, 1).reshape(*grey.shape, 9)
    return grey - patches.median(dim=-1).values


def _radial_matrix() -> torch.Tensor:
    """[GRID*GRID, RADIAL_BINS] averaging matrix: cell -> ring of equal distance from the zero frequency."""
    coords = torch.arange(GRID, dtype=torch.float32) - GRID // 2
    radius = torch.sqrt(coords[:, None] ** 2 + coords[None, :] ** 2).flatten()
    bins = torch.clamp((radius / radius.max() * RADIAL_BINS).long(), max=RADIAL_BINS - 1)
    onehot = F.one_hot(bins, RADIAL_BINS).float()
    return onehot / onehot.sum(dim=0, keepdim=True)


class SpectrumBackbone(Backbone):
    """Spectrum features; layers "radial" (16 ring averages) and "grid" (the full 32x32 spectrum)."""

    def __init__(self, name: str = "spectrum", device: str | torch.device = "cpu") -> None:
        self.name = name
        self.id = "spectrum-v1"
        self.device = torch.device(device)
        self.channels = 1
        self.layer_dims = {"radial": RADIAL_BINS, "grid": GRID * GRID}
        self.default_layer = "grid"
        self.preprocess_id = f"grey-crop{MAX_SIDE}-median3-logfft-pool{GRID}"
        self._rings = _radial_matrix().to(self.device)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Grey level, centre crop to at most 256x256, median residual, centred log |FFT| pooled to 32x32."""
        grey = to_rgb_batch(images).mean(dim=1, keepdim=True)
        height, width = grey.shape[-2:]
        top, left = max(height - MAX_SIDE, 0) // 2, max(width - MAX_SIDE, 0) // 2
        grey = grey[..., top : top + MAX_SIDE, left : left + MAX_SIDE]
        spectrum = torch.fft.fftshift(torch.fft.fft2(median_residual(grey)), dim=(-2, -1))
        pooled = F.adaptive_avg_pool2d(torch.log(spectrum.abs() + 1e-6), GRID)
        return pooled[0] if images.ndim == 3 else pooled

    def _features(self, batch: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        flat = batch.flatten(start_dim=1)
        return {layer: flat @ self._rings if layer == "radial" else flat for layer in layers}
