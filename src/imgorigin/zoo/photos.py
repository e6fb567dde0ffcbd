"""Colour photographs that ship with PyPI packages: the real images the colour zoo is trained on and tested against.

* ``train`` photos — scikit-image's sample photos (``astronaut``, ``coffee``, ``rocket``, ``motorcycle_left`` /
  ``motorcycle_right``, ``hubble_deep_field``, ``retina``, ``ihc``) and scikit-learn's ``china.jpg``; used for
  training only, as random crops (random scale, position and horizontal flip).
* ``heldout`` photos — scikit-image's ``chelsea``, scikit-learn's ``flower.jpg`` and matplotlib's
  ``grace_hopper.jpg``: never used for training; crops of them are the colour zoo's "real, never seen" images.

Photos are read from the installed packages with Pillow (scikit-image is needed only for the training photos and
``chelsea``: ``pip install scikit-image``). Licences: scikit-image's photos are public domain (NASA) or CC0;
``china.jpg`` and ``flower.jpg`` are CC BY 2.0 (danielbuechele, vultilion on Flickr); ``grace_hopper.jpg`` is
public domain (US Navy).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imgorigin.errors import ImgoriginError


class PhotosNotFoundError(ImgoriginError, FileNotFoundError):
    """A sample photo whose package is not installed."""


@dataclass(frozen=True)
class Photo:
    """One sample photo: the package that ships it and the file inside that package."""

    name: str
    package: str
    path: str


PHOTOS: dict[str, tuple[Photo, ...]] = {
    "train": (
        Photo("astronaut", "skimage", "data/astronaut.png"),
        Photo("coffee", "skimage", "data/coffee.png"),
        Photo("rocket", "skimage", "data/rocket.jpg"),
        Photo("motorcycle_left", "skimage", "data/motorcycle_left.png"),
        Photo("motorcycle_right", "skimage", "data/motorcycle_right.png"),
        Photo("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg"),
        Photo("retina", "skimage", "data/retina.jpg"),
        Photo("ihc", "skimage", "data/ihc.png"),
        Photo("china", "sklearn", "datasets/images/china.jpg"),
    ),
    "heldout": (
        Photo("chelsea", "skimage", "data/chelsea.png"),
        Photo("flower", "sklearn", "datasets/images/flower.jpg"),
        Photo("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ),
}
#: pip names of the packages, for the error message.
PIP_NAMES = {"skimage": "scikit-image", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}


def photo_path(photo: Photo) -> Path:
    """Where ``photo`` is installed; :class:`PhotosNotFoundError` naming the package to install when it is not."""
    try:
        root = resources.files(photo.package)
    except ModuleNotFoundError:
        raise PhotosNotFoundError(
            f"sample photo {photo.name!r} ships with {PIP_NAMES.get(photo.package, photo.package)}, which is not "
            f"installed: pip install {PIP_NAMES.get(photo.package, photo.package)}"
        ) from None
    path = Path(str(root / photo.path))
    if not path.is_file():
        raise PhotosNotFoundError(f"sample photo {photo.name!r} not found at {path}")
    return path


def load_photos(split: str) -> list[np.ndarray]:
    """The photos of ``split`` (``train`` or ``heldout``) as uint8 RGB arrays ``[H, W, 3]``."""
    if split not in PHOTOS:
        raise ValueError(f"split must be one of {sorted(PHOTOS)}, not {split!r}")
    return [np.asarray(Image.open(photo_path(p)).convert("RGB")) for p in PHOTOS[split]]


def random_crops(split: str, n: int, size: int, seed: int, min_scale: float = 0.15, flip: bool = True) -> torch.Tensor:
    """``n`` random ``size``×``size`` crops of ``split``'s photos, float ``[n, 3, size, size]`` in [0, 1].

    Each crop picks a photo (all equally likely, whatever their size), a zoom (log-uniform: the crop spans
    between ``size`` and ``size / min_scale`` pixels of the photo, at most its short side), a position and, with
    ``flip``, a horizontal flip; the region is resized with Pillow's Lanczos filter. Deterministic per seed.
    """
    photos = [Image.fromarray(a) for a in load_photos(split)]
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        short = min(photo.width, photo.height)
        low = max(min_scale, size / short)
        side = size / float(np.exp(rng.uniform(np.log(low), 0.0)))  # the crop's side in the photo's pixels
        x, y = rng.uniform(0, photo.width - side), rng.uniform(0, photo.height - side)
        crop = np.asarray(photo.resize((size, size), Image.LANCZOS, box=(x, y, x + side, y + side)))
        out[i] = crop[:, ::-1] if flip and rng.random() < 0.5 else crop
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
