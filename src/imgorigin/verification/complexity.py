"""Image complexity, to calibrate reconstruction losses (the paper's Eq. 2 idea; the exact form is open).

Simple images reconstruct well under any generator, complex ones badly; dividing the loss by a complexity
measure removes part of that confound. Measured in the benchmark as a variant, not used by default.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from imgorigin.images import uint8_codes

JPEG_QUALITY = 90


def jpeg_bits_per_pixel(images: torch.Tensor, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Bits per pixel of each image ``[N, C, H, W]`` in [0, 1] encoded as JPEG at ``quality``."""
    out = np.empty(images.shape[0])
    for i, image in enumerate(images):
        array = uint8_codes(image).permute(1, 2, 0).squeeze(-1).numpy()
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
        out[i] = 8 * buffer.tell() / (image.shape[-1] * image.shape[-2])
    return out


def complexity_calibrated(scores: np.ndarray, images: torch.Tensor) -> np.ndarray:
    """Reconstruction loss divided by JPEG bits per pixel: the 'complexity' score variant."""
    return np.asarray(scores) / jpeg_bits_per_pixel(images)
