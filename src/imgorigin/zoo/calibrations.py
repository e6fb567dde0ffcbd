"""Calibration files shipped with the zoo, so `imgorigin verify zoo:NAME ...` needs no calibrate step."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Samples per shipped calibration (the issue's and the paper's protocol: the model's own images).
SHIPPED_SAMPLES = 200
#: Seed of the calibration samples; benchmarks draw members with other seeds so they never overlap.
SHIPPED_SEED = 1_000


def calibration_dir() -> Path:
    """Folder of the shipped calibration files (``NAME.json``)."""
    return Path(str(resources.files(__package__) / "calibration"))


def calibration_path(name: str) -> Path:
    """The shipped calibration of zoo model ``name``; a clear error when it is missing."""
    from . import get_recipe

    get_recipe(name)
    path = calibration_dir() / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no shipped calibration for zoo:{name} at {path}; make one with "
                                f"`imgorigin calibrate zoo:{name} --out CAL` and pass --calibration CAL")
    return path
