"""Calibration files and the decision rules built on them.

A calibration file holds the scores of images the model itself generated (inverted with the settings stored
beside them), optionally the scores of reference real images, and enough identity to refuse a mismatched
model. Decisions from it:

* the paper's Grubbs-type outlier test (Wang et al. 2023, Algorithm 1), applied to log-scores because
  reconstruction losses are strongly right-skewed and Grubbs assumes normality;
* a conformal p-value ``(1 + #{calibration scores >= s}) / (N + 1)``: if the image came from the model, then
  P(p <= α) <= α, so at most a fraction α of the model's own images are wrongly rejected;
* optionally a second conformal p-value against reference real images ``(1 + #{real scores <= s}) / (M + 1)``:
  small when the image reconstructs better than real images do; it bounds how often a real image is wrongly
  attributed to the model.

For the MSE distance, scores are compared at no finer than the 8-bit quantisation floor (1/255)²/12 ≈ 1.3e-6:
an image that reconstructs to within the rounding error of its own pixels is as well explained as an image
can be, and differences below that are optimiser noise, not evidence (without the floor, members whose
residual stopped at 1.05e-6 were rejected against calibration scores that stopped at 0.95e-6).

A calibration is of one ``method``: ``inversion`` (the default: inversion losses, settings in ``inversion``) or
a fast score, ``double-reconstruction`` (the fast path's loss ratios) or ``denoising-profile`` (a pixel diffusion
model's profile distances), settings in ``fast`` (see :mod:`imgorigin.verification.fastpath`). The kinds of
score live on different scales, so each kind of calibration refuses to decide the other kind of score
(:meth:`Calibration.require_method`). Inversion calibrations keep the file content and digest they always had.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from imgorigin.errors import ImgoriginError
from imgorigin.verification.fastpath import FAST_SCORES, INVERSION, FastConfig
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.initializer import LearnedInit, digest
from imgorigin.verification.inversion import InversionConfig
from imgorigin.version import __version__

FORMAT = "imgorigin.calibration/1"
#: MSE of rounding [0, 1] pixels to 8 bits, (1/255)² / 12: scores below it are indistinguishable.
QUANTISATION_FLOOR = 1 / (255**2 * 12)
#: Standard deviations of the rounding MSE's own spread, over an image's N values (uniform rounding errors:
#: sd = sqrt(0.8 / N) x the floor), that a score may lie above the floor and still count as at it. An exact
#: reconstruction of a 64×64 RGB member scores 1.25–1.30e-6; ranking such scores is ranking rounding noise
#: (measured: 12–15 % of dcgan-rgb members rejected at alpha = 0.05 while every one of them was at the floor).
FLOOR_BAND = 3.0


class CalibrationError(ImgoriginError, ValueError):
    """A calibration file that is unreadable or does not belong to the model it is used with."""


@dataclass
class Calibration:
    """Scores of the model's own images, the settings that produced them, and the model's identity."""

    model_id: str
    weight_hash: str
    image_shape: tuple[int, int, int]
    inversion: InversionConfig
    scores: np.ndarray
    source: str = "generated"  # "generated" (sampled by calibrate) or the folder of user-given samples
    seed: int | None = None
    reference_scores: np.ndarray | None = None
    reference_source: str | None = None
    version: str = __version__
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    #: The processing the calibration samples went through (None: pristine 8-bit PNGs), e.g. ``"jpeg:75"``: the
    #: model's own images saved as JPEG at IJG quality 75. Its error rates hold only for images processed the same
    #: way (:func:`imgorigin.verification.verifier.processing_family` names an image's processing).
    perturbation: str | None = None
    #: ``inversion`` (scores are inversion losses) or a fast score (``double-reconstruction``,
    #: ``denoising-profile``: see :data:`~imgorigin.verification.fastpath.FAST_SCORES`).
    method: str = INVERSION
    #: The fast score's settings (fast methods only; ``FastConfig(score=method)`` when not given).
    fast: FastConfig | None = None
    #: How ``inversion.retries`` was chosen from the samples (:class:`~imgorigin.verification.retries.RetryChoice`
    #: as a dict), None when it was given. A record of the search, not part of the decision.
    retry_search: dict | None = None
    #: A pixel-diffusion model's sampler settings (:attr:`DDIMGenerator.sampler`: steps, timesteps, spacing,
    #: clipping, η): ``verify`` loads the model with them, and a model set otherwise is refused by name.
    sampler: dict | None = None
    #: The learned initialiser the inversion starts from (``inversion.init == "learned"``), as safetensors bytes
    #: (:mod:`imgorigin.verification.initializer`); stored in the file, its sha256 in the digest.
    initializer: bytes | None = None
    #: How it was trained (:class:`~imgorigin.verification.initializer.InitializerConfig` as a dict) and in how
    #: many seconds: a record, not part of the decision.
    initializer_training: dict | None = None

    def __post_init__(self) -> None:
        if self.method not in (INVERSION, *FAST_SCORES):
            known = ", ".join((INVERSION, *FAST_SCORES))
            raise CalibrationError(f"calibration method must be one of {known}, not {self.method!r}")
        if self.method != INVERSION and self.fast is None:
            self.fast = FastConfig(score=self.method)
        if self.method == INVERSION and self.fast is not None:
            raise CalibrationError("an inversion calibration has no fast-path settings")
        if self.fast is not None and self.fast.score != self.method:
            raise CalibrationError(f"a {self.method} calibration holds {self.fast.score} settings")
        if self.fast is not None and self.fast.is_profile and self.fast.profile is None:
            raise CalibrationError("a denoising-profile calibration needs its fitted profile")
        self.scores = np.sort(np.asarray(self.scores, dtype=np.float64))
        if self.scores.size < 2 or not np.all(np.isfinite(self.scores)):
            raise CalibrationError("a calibration needs at least 2 finite scores")
        if self.reference_scores is not None:
            self.reference_scores = np.sort(np.asarray(self.reference_scores, dtype=np.float64))
        if (self.initializer is not None) != (self.method == INVERSION and self.inversion.init == "learned"):
            raise CalibrationError("a calibration has a learned initialiser exactly when its inversion init is learned")

    # -- decisions ---------------------------------------------------------------------------------------
    @property
    def floor(self) -> float:
        """Scores are compared at no finer than this: for inversion with ``mse``, the 8-bit quantisation MSE plus
        :data:`FLOOR_BAND` standard deviations of its spread over this image size, else 0 (fast scores are ratios,
        not distances)."""
        if self.method != INVERSION or self.inversion.distance != "mse":
            return 0.0
        return QUANTISATION_FLOOR * (1 + FLOOR_BAND * math.sqrt(0.8 / math.prod(self.image_shape)))

    @property
    def is_fast(self) -> bool:
        """Whether the scores are a training-free fast score (double reconstruction or denoising profile)."""
        return self.method != INVERSION

    @property
    def settings(self) -> InversionConfig | FastConfig:
        """The settings that produce this calibration's kind of score (inversion or fast path)."""
        return self.fast if self.is_fast else self.inversion  # type: ignore[return-value]

    def require_method(self, kind: str) -> None:
        """Refuse to decide scores of another kind (``inversion`` or ``fast``) than the calibration's own."""
        if kind != ("fast" if self.is_fast else INVERSION):
            made = "`imgorigin calibrate MODEL --method fast`" if kind == "fast" else "`imgorigin calibrate MODEL`"
            raise CalibrationError(
                f"this calibration holds {self.method} scores (model {self.model_id}); deciding {kind} scores "
                f"needs a calibration made with {made}"
            )

    def _at_floor(self, scores: np.ndarray | float) -> np.ndarray:
        return np.maximum(scores, self.floor)

    def p_value(self, score: float) -> float:
        """Conformal p-value of ``score`` against the model's own scores (large = typical of the model)."""
        return conformal_p_value(float(self._at_floor(score)), self._at_floor(self.scores))

    def p_value_real(self, score: float) -> float | None:
        """Conformal p-value that ``score`` is as low as a real image's; None without reference scores."""
        if self.reference_scores is None:
            return None
        return conformal_p_value(-float(self._at_floor(score)), -self._at_floor(self.reference_scores))

    def grubbs(self, score: float, alpha: float) -> tuple[float, bool]:
        """(p-value, is_outlier) of the one-sided Grubbs test of log(score) against the log calibration scores."""
        floor = max(self.floor, 1e-30)
        return grubbs_test(math.log(max(score, floor)), np.log(np.maximum(self.scores, floor)), alpha)

    def threshold(self, alpha: float) -> float:
        """The largest score still accepted at level α by the conformal rule (for reporting the operating point)."""
        n = self.scores.size
        k = math.floor(alpha * (n + 1))  # accepted iff #{cal >= s} >= k, i.e. s <= the k-th largest score
        return math.inf if k < 1 else float(self._at_floor(self.scores[n - k]))

    def in_range(self, score: float) -> bool:
        """Whether ``score`` lies within the span of calibration scores (outside: extrapolation, flagged)."""
        return bool(self._at_floor(self.scores[0]) <= self._at_floor(score) <= self._at_floor(self.scores[-1]))

    def bind(self, generator: Generator) -> Generator:
        """The generator as this calibration inverts it: with its learned initialiser when it has one."""
        if self.initializer is None:
            return generator
        return LearnedInit(generator, self.initializer, self.initializer_training)

    # -- identity --------------------------------------------------------------------------------------
    def check_model(
        self, model_id: str, weight_hash: str, image_shape: tuple[int, ...], sampler: dict | None = None
    ) -> None:
        """Refuse a model whose weights, sampler settings or output shape differ from the calibrated one."""
        if self.sampler is not None and sampler is not None and sampler != self.sampler:
            from imgorigin.verification.generators.ddim import sampler_differences

            raise CalibrationError(
                f"calibration was made for model {self.model_id} sampled otherwise "
                f"({sampler_differences(self.sampler, sampler)}; calibration's setting first): a calibration "
                f"decides only images of the sampler it was made with; load the model with the calibration's "
                f"settings or run `imgorigin calibrate` with these"
            )
        if weight_hash != self.weight_hash:
            raise CalibrationError(
                f"calibration was made for model {self.model_id} (weights {self.weight_hash[:12]}…), "
                f"not {model_id} (weights {weight_hash[:12]}…): run `imgorigin calibrate` for this model"
            )
        if tuple(image_shape) != tuple(self.image_shape):
            raise CalibrationError(f"calibration image shape {self.image_shape} != model output {image_shape}")

    # -- files -----------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready dict (format tag, model identity, settings, all scores)."""
        return {
            "format": FORMAT,
            "model": {"id": self.model_id, "weight_hash": self.weight_hash, "image_shape": list(self.image_shape)},
            "inversion": self.inversion.to_dict() if self.method == INVERSION else None,
            "source": self.source,
            "seed": self.seed,
            "n": int(self.scores.size),
            "scores": self.scores.tolist(),
            "reference_real": None
            if self.reference_scores is None
            else {
                "source": self.reference_source,
                "n": int(self.reference_scores.size),
                "scores": self.reference_scores.tolist(),
            },
            "version": self.version,
            "created": self.created,
            "perturbation": self.perturbation,
            **({} if self.method == INVERSION else {"method": self.method, "fast": self.fast.to_dict()}),
            **({} if self.retry_search is None else {"retry_search": self.retry_search}),
            **({} if self.sampler is None else {"sampler": self.sampler}),
            **({} if self.initializer is None else {"initializer": self._initializer_dict()}),
        }

    def _initializer_dict(self) -> dict:
        return {
            "sha256": digest(self.initializer),  # type: ignore[arg-type]
            "training": self.initializer_training,
            "safetensors_base64": base64.b64encode(self.initializer).decode("ascii"),  # type: ignore[arg-type]
        }

    def digest(self) -> str:
        """sha256 of what decisions depend on (model, inversion settings, own and reference scores), so a run
        records exactly which calibration decided it; the creation time and file paths do not count."""
        data = self.to_dict()
        reference = data["reference_real"]
        kept = {
            "model": data["model"],
            "inversion": data["inversion"],
            "scores": data["scores"],
            "reference_scores": None if reference is None else reference["scores"],
        }
        if self.perturbation is not None:  # pristine calibrations keep the digest they always had
            kept["perturbation"] = self.perturbation
        if self.method != INVERSION:  # and so do inversion calibrations
            kept["method"], kept["fast"] = self.method, data["fast"]
        if self.initializer is not None:
            kept["initializer"] = data["initializer"]["sha256"]
        return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write the calibration as JSON (never pickle) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration file written by :meth:`save`, with a clear error for anything else."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise CalibrationError(f"{path}: not an imgorigin calibration file (format {data.get('format')!r})")
            ref = data.get("reference_real")
            return cls(
                model_id=data["model"]["id"],
                weight_hash=data["model"]["weight_hash"],
                image_shape=tuple(data["model"]["image_shape"]),
                inversion=InversionConfig()
                if data["inversion"] is None
                else InversionConfig.from_dict(data["inversion"]),
                scores=np.array(data["scores"]),
                source=data.get("source", "generated"),
                seed=data.get("seed"),
                reference_scores=None if ref is None else np.array(ref["scores"]),
                reference_source=None if ref is None else ref.get("source"),
                version=data.get("version", "?"),
                created=data.get("created", "?"),
                perturbation=data.get("perturbation"),
                method=data.get("method", INVERSION),
                fast=None if data.get("fast") is None else FastConfig.from_dict(data["fast"]),
                retry_search=data.get("retry_search"),
                sampler=data.get("sampler"),
                initializer=_initializer_bytes(path, data.get("initializer")),
                initializer_training=(data.get("initializer") or {}).get("training"),
            )
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError):
                raise
            raise CalibrationError(f"{path}: unreadable calibration file ({exc})") from exc


def _initializer_bytes(path: Path, stored: dict | None) -> bytes | None:
    """A file's learned initialiser, checked against the sha256 stored beside it."""
    if stored is None:
        return None
    data = base64.b64decode(stored["safetensors_base64"], validate=True)
    if digest(data) != stored["sha256"]:
        raise CalibrationError(f"{path}: its learned initialiser does not match the sha256 stored with it")
    return data


def conformal_p_value(score: float, calibration: np.ndarray) -> float:
    """``(1 + #{c >= score}) / (N + 1)``: the rank p-value of a new score among exchangeable calibration scores."""
    calibration = np.asarray(calibration)
    return float((1 + np.count_nonzero(calibration >= score)) / (calibration.size + 1))


def grubbs_critical_value(n: int, alpha: float) -> float:
    """One-sided Grubbs critical value for the largest of ``n`` values at significance α."""
    from scipy import stats  # here, not at import: scipy.stats costs ~0.6 s at every CLI start

    t = stats.t.ppf(1 - alpha / n, n - 2)
    return (n - 1) / math.sqrt(n) * math.sqrt(t * t / (n - 2 + t * t))


def grubbs_test(value: float, sample: np.ndarray, alpha: float) -> tuple[float, bool]:
    """Is ``value`` a high outlier of ``sample`` ∪ {value}? Returns (p-value, outlier at level α).

    G = (value − mean) / sd over the augmented sample of size n = N + 1; the p-value is the Bonferroni bound
    n · P(T_{n−2} > t) with t² = n(n−2)G² / ((n−1)² − nG²), the exact inverse of the critical-value formula.
    """
    augmented = np.append(np.asarray(sample, dtype=np.float64), value)
    n = augmented.size
    if n < 3:
        raise ValueError("Grubbs test needs at least 2 calibration values")
    sd = augmented.std(ddof=1)
    g = 0.0 if sd == 0 else (value - augmented.mean()) / sd
    if g <= 0:
        return 1.0, False
    denom = (n - 1) ** 2 - n * g * g
    if denom <= 0:  # G at its attainable maximum: as extreme as the augmented sample allows
        return 0.0, True
    t = math.sqrt(n * (n - 2) * g * g / denom)
    from scipy import stats

    p = min(1.0, n * float(stats.t.sf(t, n - 2)))
    return p, bool(g > grubbs_critical_value(n, alpha))
