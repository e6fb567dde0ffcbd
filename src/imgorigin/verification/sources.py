"""One resolver from a MODEL spec to a :class:`Generator`, and to its shipped calibration where one ships.

Accepted forms, tried in this order:
  ``SCHEME:NAME``              a registered model source: ``zoo:NAME`` (the shipped zoo), ``hf:ORG/NAME`` (a
                               diffusers model in the offline Hugging Face cache, never downloaded), or any
                               source a package registers (entry-point group ``imgorigin.sources``);
  an existing file             a TorchScript generator (``torch.jit.save``);
  an existing directory        a diffusers model: an autoencoder (``AutoencoderKL``/``VQModel``), a
                               ``UNet2DModel`` with its scheduler, or a whole pipeline folder;
  ``package.module:function``  a Python factory returning a Generator or an ``nn.Module`` with ``latent_shape``.

Sources register themselves, as timm's ``register_model`` does: the zoo declares its :class:`ModelSource` as an
entry point, so nothing here imports the zoo (no import runs back up the pipeline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch

from imgorigin.verification.calibration import CalibrationError
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.generators.loading import (
    FACTORY_PATTERN,
    ModelSpecError,
    load_diffusers,
    load_factory,
)
from imgorigin.verification.generators.torchscript import load_torchscript

ENTRY_POINT_GROUP = "imgorigin.sources"


@dataclass(frozen=True)
class ModelSource:
    """A family of ``SCHEME:NAME`` specs: how to load NAME, and where its shipped calibration is (if any)."""

    scheme: str
    load: Callable[..., Generator]
    """``load(name, ddim_steps=None)``: the generator on the CPU."""
    calibration: Callable[[str], Path] | None = None
    """``calibration(name)``: the shipped calibration file; raises ``CalibrationError`` saying why there is none."""


_SOURCES: dict[str, ModelSource] = {}
_discovered = False


def register_source(source: ModelSource) -> ModelSource:
    """Make ``SCHEME:NAME`` specs resolve through ``source`` (a later registration of the scheme replaces it)."""
    _SOURCES[source.scheme] = source
    return source


def sources() -> dict[str, ModelSource]:
    """The registered sources by scheme, entry-point plugins included (loaded once)."""
    global _discovered
    if not _discovered:
        _discovered = True
        for point in entry_points(group=ENTRY_POINT_GROUP):
            source = point.load()
            if not isinstance(source, ModelSource):
                raise TypeError(f"entry point {point.name} of {ENTRY_POINT_GROUP} is not a ModelSource")
            _SOURCES.setdefault(source.scheme, source)
    return _SOURCES


def _scheme(spec: str) -> tuple[ModelSource, str] | None:
    """The registered source a spec names, and the name after ``SCHEME:``."""
    scheme, sep, name = spec.partition(":")
    source = sources().get(scheme) if sep else None
    return (source, name) if source is not None else None


def load_generator(
    spec: str,
    *,
    device: str | torch.device = "cpu",
    ddim_steps: int | None = None,
    sampler: dict[str, Any] | None = None,
) -> Generator:
    """Load the generator that ``spec`` names, in inference mode on ``device``.

    ``sampler``: the sampler settings a calibration recorded (:attr:`Calibration.sampler`); a pixel-diffusion model
    is then sampled exactly so (steps, spacing, clipping, η = 0), whatever its saved scheduler's default steps.
    """
    generator = _resolve(spec, ddim_steps)
    if sampler is not None and hasattr(generator, "with_sampler"):
        try:
            generator = generator.with_sampler(sampler)
        except ValueError as exc:
            raise CalibrationError(f"MODEL {spec}: {exc}; calibrate it again with its current scheduler") from None
    return generator.eval().to(device)


def default_calibration(spec: str) -> Path:
    """The calibration file shipped with the model ``spec`` names, or ``CalibrationError`` saying how to make one."""
    found = _scheme(spec)
    if found is not None and found[0].calibration is not None:
        return found[0].calibration(found[1])
    raise CalibrationError(
        f"{spec} ships no calibration: give its calibration (--calibration CAL, or LABEL=MODEL@CAL in a binding); "
        f"write one with `imgorigin calibrate {spec} --out CAL`"
    )


def _resolve(spec: str, ddim_steps: int | None) -> Generator:
    found = _scheme(spec)
    if found is not None:
        return found[0].load(found[1], ddim_steps=ddim_steps)
    path = Path(spec).expanduser()
    if path.is_file():
        return load_torchscript(path)
    if path.is_dir():
        return load_diffusers(path, ddim_steps=ddim_steps)
    if FACTORY_PATTERN.match(spec):
        return load_factory(spec)
    schemes = " | ".join(f"{scheme}:NAME" for scheme in sources())
    raise ModelSpecError(
        f"MODEL {spec!r} is not a registered source, an existing file or directory, or a 'package.module:function' "
        f"factory. Accepted: {schemes} | model.pt (TorchScript) | diffusers_dir/ | pkg.mod:fn"
    )


register_source(ModelSource("hf", lambda name, ddim_steps=None: load_diffusers(name, ddim_steps=ddim_steps)))
