"""Fashion-MNIST: the real images every zoo model is trained on and compared with.

* ``train`` split (60 000 images) — used for training only.
* ``test`` split (10 000 images) — "real, never seen": the real-image reference for verification and for the
  Fréchet distance in the model cards.
* a shipped subset of the test split (:func:`load_subset`, 200 images, always available, no system package
  needed) for the demo and the tests.

The full splits are read from the Debian package ``dataset-fashion-mnist`` (idx.gz files under
``/usr/share/datasets/fashion-mnist/``) with numpy only. Fashion-MNIST is © 2017 Zalando SE, MIT licence
(see ``data/LICENSE-fashion-mnist.txt``).
"""

from __future__ import annotations

import gzip
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from imgorigin.errors import ImgoriginError

#: Where the Debian package ``dataset-fashion-mnist`` installs the idx.gz files.
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
#: Environment variable that points at another directory holding the same four idx.gz files.
ROOT_ENV = "IMGORIGIN_FASHION_MNIST"

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

SUBSET_FILE = "fashion_mnist_test_subset.npz"


class DatasetNotFoundError(ImgoriginError, FileNotFoundError):
    """The full Fashion-MNIST splits are not installed on this machine."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one (optionally gzipped) idx file (the MNIST format) into a numpy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic number)")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown idx element type 0x{data[2]:02x}")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[data[2]])
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - offset != expected:
        raise ValueError(f"{path}: expected {expected} bytes of data for shape {dims}, found {len(data) - offset}")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def dataset_root(root: str | os.PathLike | None = None) -> Path:
    """The directory holding the idx.gz files: ``root``, else ``$IMGORIGIN_FASHION_MNIST``, else the Debian path."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ROOT_ENV)
    return Path(env) if env else DEFAULT_ROOT


def is_available(root: str | os.PathLike | None = None) -> bool:
    """Whether the full splits can be read (the Debian package is installed or ``root`` holds the files)."""
    base = dataset_root(root)
    return all((base / f).is_file() for files in SPLIT_FILES.values() for f in files)


def load_split(split: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Full split ``"train"`` (60 000) or ``"test"`` (10 000): ``(images uint8 [N, 28, 28], labels uint8 [N])``.

    Raises :class:`DatasetNotFoundError` with the install command when the files are missing.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}, not {split!r}")
    base = dataset_root(root)
    img_name, lbl_name = SPLIT_FILES[split]
    img_path, lbl_path = base / img_name, base / lbl_name
    missing = [str(p) for p in (img_path, lbl_path) if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST {split} split not found ({', '.join(missing)} missing). Install it with "
            f"`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; MIT licence), or point "
            f"${ROOT_ENV} at a directory holding the four *-ubyte.gz files. The shipped 200-image test "
            f"subset is always available through imgorigin.zoo.data.load_subset()."
        )
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (images.shape[0],):
        raise ValueError(f"unexpected Fashion-MNIST shapes: images {images.shape}, labels {labels.shape}")
    return images, labels


def load_subset() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The shipped test-split subset: ``(images uint8 [200, 28, 28], labels [200], test-split indices [200])``.

    Always available (shipped in the package); 20 images per class, drawn once with numpy seed 20240501.
    """
    ref = resources.files("imgorigin.zoo") / "data" / SUBSET_FILE
    with resources.as_file(ref) as path, np.load(path) as npz:
        return npz["images"].copy(), npz["labels"].copy(), npz["indices"].copy()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` → float32 ``[N, 1, 28, 28]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32).div_(255.0).unsqueeze(1)


def train_images(root: str | os.PathLike | None = None) -> torch.Tensor:
    """The 60 000 training images as float ``[N, 1, 28, 28]`` in [0, 1] (training only)."""
    return to_tensor(load_split("train", root)[0])


def test_images(root: str | os.PathLike | None = None) -> torch.Tensor:
    """The 10 000 test images as float ``[N, 1, 28, 28]`` in [0, 1] ("real, never seen" by any zoo model)."""
    return to_tensor(load_split("test", root)[0])


def subset_images() -> torch.Tensor:
    """The shipped 200 test images as float ``[200, 1, 28, 28]`` in [0, 1]."""
    return to_tensor(load_subset()[0])
