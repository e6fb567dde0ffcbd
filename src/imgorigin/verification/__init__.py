"""Verification, "did this model make this image?": generators → inversion → calibration → verifier.

The pipeline of Wang et al. (NeurIPS 2023): invert the model's input for the image, score the best
reconstruction, and decide against the scores of the model's own samples with stated error rates.
"""

from imgorigin.verification.calibration import Calibration, CalibrationError
from imgorigin.verification.generators import Generator
from imgorigin.verification.initializer import InitializerConfig
from imgorigin.verification.inversion import InversionConfig, Inverter
from imgorigin.verification.sources import ModelSource, default_calibration, load_generator, register_source
from imgorigin.verification.verifier import Verifier, calibrate, decide

__all__ = [
    "Calibration",
    "CalibrationError",
    "Generator",
    "InitializerConfig",
    "InversionConfig",
    "Inverter",
    "ModelSource",
    "Verifier",
    "calibrate",
    "decide",
    "default_calibration",
    "load_generator",
    "register_source",
]
