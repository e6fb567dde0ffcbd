"""The :class:`~imgorigin.distributed.engine.Job` of each batch command: how a worker rebuilds the driver's scorer.

A job holds only plain, picklable settings (model spec, calibration, classifier folder, ...), never a loaded model:
each worker loads its own copy once, on its own device, and checks that its run identity is the driver's.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from imgorigin.distributed.engine import Job
from imgorigin.runtime import default_cache_dir, resolve_device
from imgorigin.verification import Calibration, Verifier, load_generator


def build_verifier(
    model: str,
    calibration: Calibration,
    processed: list[Calibration],
    alpha: float,
    detail_alpha: float | None,
    detail_samples: int,
    cache_dir: str | None,
    device: str,
    method: str = "inversion",
    fast_calibration: Calibration | None = None,
    screen_reject: float | None = None,
    screen_accept: float | None = None,
) -> Verifier:
    """A verifier as ``imgorigin verify`` builds one, on this worker (its own default cache folder when the run
    named none)."""
    return Verifier(
        load_generator(model, device=resolve_device(device), sampler=calibration.sampler),
        calibration,
        alpha=alpha,
        cache_dir=cache_dir or default_cache_dir(),
        processed_calibrations=processed,
        detail_alpha=detail_alpha,
        detail_samples=detail_samples,
        method=method,
        fast_calibration=fast_calibration,
        screen_reject=screen_reject,
        screen_accept=screen_accept,
    )


def verifier_job(verifier: Verifier, model: str, *, device: str, cache_dir: str | os.PathLike[str] | None) -> Job:
    """The job of ``imgorigin verify``: the driver's verifier (its calibration objects travel as they are, reference
    real scores included; the method and screen levels with them) rebuilt on each worker from the model spec.
    Per-stage counts (``verifier.stats``) stay on the workers."""
    build = functools.partial(
        build_verifier,
        model,
        verifier.calibration,
        list(verifier.processed_calibrations),
        verifier.alpha,
        verifier.detail_alpha,
        verifier.detail_samples,
        os.fspath(cache_dir) if cache_dir is not None else None,
        device,
        verifier.method,
        verifier.fast_calibration,
        verifier.screen_reject,
        verifier.screen_accept,
    )
    return Job(build, "verify_paths", verifier.identity())


def path_text(path: Path | None) -> str | None:
    """A path as text for a job (absolute, so a worker in another folder finds the same file)."""
    return None if path is None else os.fspath(Path(path).absolute())
