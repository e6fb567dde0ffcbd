"""imgorigin: did this model make the image (verification), and which known generator made it (attribution).

The public API, importable from the package root::

    import imgorigin as io

    gen = io.load_generator("zoo:vae")                       # any MODEL form the CLI accepts
    verifier = io.Verifier(gen, io.Calibration.load(io.default_calibration("zoo:vae")))
    attributor = io.Attributor.fit("train/")                  # one sub-folder of images per known source

Names load on first use (PEP 562), so ``import imgorigin`` and the CLI's start-up stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from imgorigin.version import __version__

#: Public name -> the module that defines it.
_EXPORTS = {
    "ImgoriginError": "imgorigin.errors",
    "UsageError": "imgorigin.errors",
    "ImageError": "imgorigin.images",
    "load_generator": "imgorigin.verification.sources",
    "default_calibration": "imgorigin.verification.sources",
    "register_source": "imgorigin.verification.sources",
    "ModelSource": "imgorigin.verification.sources",
    "Generator": "imgorigin.verification.generators.base",
    "InversionConfig": "imgorigin.verification.inversion",
    "Calibration": "imgorigin.verification.calibration",
    "calibrate": "imgorigin.verification.verifier",
    "Verifier": "imgorigin.verification.verifier",
    "OpenSetClassifier": "imgorigin.attribution.openset",
    "Attributor": "imgorigin.attribution.attributor",
    "TwoStageAttributor": "imgorigin.twostage",
    "Bindings": "imgorigin.twostage",
}
__all__ = [
    "Attributor",
    "Bindings",
    "Calibration",
    "Generator",
    "ImageError",
    "ImgoriginError",
    "InversionConfig",
    "ModelSource",
    "OpenSetClassifier",
    "TwoStageAttributor",
    "UsageError",
    "Verifier",
    "__version__",
    "calibrate",
    "default_calibration",
    "load_generator",
    "register_source",
]

if TYPE_CHECKING:
    from imgorigin.attribution.attributor import Attributor
    from imgorigin.attribution.openset import OpenSetClassifier
    from imgorigin.errors import ImgoriginError, UsageError
    from imgorigin.images import ImageError
    from imgorigin.twostage import Bindings, TwoStageAttributor
    from imgorigin.verification.calibration import Calibration
    from imgorigin.verification.generators.base import Generator
    from imgorigin.verification.inversion import InversionConfig
    from imgorigin.verification.sources import ModelSource, default_calibration, load_generator, register_source
    from imgorigin.verification.verifier import Verifier, calibrate


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'imgorigin' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
