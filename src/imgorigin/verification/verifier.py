"""Verification: "did this model generate this image?", from image files to self-contained JSON records.

Flow: files → :mod:`imgorigin.images` → batched :class:`~imgorigin.verification.inversion.Inverter` → score →
decision against a :class:`~imgorigin.verification.calibration.Calibration` → one record per image.
Scores are cached by image content hash, model weights and inversion settings, so reruns and resumed
batches never invert an image twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from imgorigin.errors import UsageError
from imgorigin.images import LoadedImage, find_images, load_images, quantize_8bit, scan_inputs
from imgorigin.labels import INCONCLUSIVE, MEMBER, NON_MEMBER
from imgorigin.verification.calibration import Calibration, CalibrationError
from imgorigin.verification.detail import DEFAULT_ALPHA, STATISTIC, DetailReference
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.inversion import InversionConfig, Inverter, image_key
from imgorigin.version import __version__

METHOD = "ronan-inversion"
#: The reason codes that make a verdict ``inconclusive`` (set by :func:`decide`).
INCONCLUSIVE_REASONS = (
    "too_little_information",
    "processing_not_calibrated",
    "smoother_than_model",
    "overlaps_real_reference",
    "reference_set_too_small",
)
#: Images loaded and inverted per chunk in batch runs: bounds memory while records stream out.
CHUNK = 256


class ScoreCache:
    """Append-only JSON-lines store of inversion scores for one (model weights, settings) pair."""

    def __init__(
        self,
        generator: Generator,
        config: InversionConfig,
        cache_dir: str | Path | None,
        *,
        weight_hash: str | None = None,
    ) -> None:
        """``weight_hash``: the generator's, when the caller has it already (hashing large weights takes seconds)."""
        self.scores: dict[str, float] = {}
        self.path: Path | None = None
        if cache_dir is None:
            return
        settings = json.dumps(config.to_dict(), sort_keys=True)
        weights = weight_hash or generator.weight_hash()
        key = hashlib.sha256(f"{weights}|{settings}|{generator.image_shape}".encode()).hexdigest()
        self.path = Path(cache_dir) / "scores" / f"{key[:32]}.jsonl"
        data = self.path.read_bytes() if self.path.is_file() else b""
        self._torn = bool(data) and not data.endswith(b"\n")  # a run killed mid-line: start the next on a new one
        if data:
            for line in data.splitlines():
                entry = _cache_entry(line)
                if entry is not None:
                    self.scores[entry[0]] = entry[1]

    def get(self, sha256: str) -> float | None:
        """The cached score of an image, or None."""
        return self.scores.get(sha256)

    def put(self, sha256: str, score: float) -> None:
        """Record a score (in memory, and on disk when the cache has a directory)."""
        self.scores[sha256] = score
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(("\n" if self._torn else "") + json.dumps({"sha256": sha256, "score": score}) + "\n")
            self._torn = False


def _cache_entry(line: bytes) -> tuple[str, float] | None:
    """(sha256, score) of one cache line, or None for a line that is cut short, corrupt or not a valid score
    (NaN, negative, not a number): such an image is simply inverted again and its new line wins."""
    try:
        entry = json.loads(line)
        sha256, score = entry["sha256"], entry["score"]
    except (ValueError, KeyError, TypeError):
        return None
    valid = isinstance(sha256, str) and isinstance(score, int | float) and not isinstance(score, bool)
    return (sha256, float(score)) if valid and math.isfinite(score) and score >= 0 else None


@dataclass
class ScoredImage:
    """An image and its inversion score (``seconds``: wall time since the previous image of its batch finished)."""

    image: LoadedImage
    score: float
    seconds: float
    cached: bool


def score_loaded(
    generator: Generator,
    config: InversionConfig,
    images: Sequence[LoadedImage],
    *,
    cache: ScoreCache | None = None,
    progress: bool = False,
) -> Iterator[ScoredImage]:
    """Invert loaded images (cached ones are not recomputed), yielding each as soon as it is scored."""
    pending = []
    for image in images:
        cached = cache.get(image.sha256) if cache else None
        if cached is not None:
            yield ScoredImage(image, cached, 0.0, True)
        else:
            pending.append(image)
    if not pending:
        return
    tensors = torch.stack([img.tensor() for img in pending])
    keys = [img.sha256 for img in pending]
    last = time.perf_counter()
    for done in Inverter(generator, config).finished(tensors, keys=keys, progress=progress):
        now = time.perf_counter()
        if cache:
            cache.put(pending[done.index].sha256, done.score)
        yield ScoredImage(pending[done.index], done.score, now - last, False)  # its share of the wall time
        last = now


def score_paths(
    generator: Generator,
    config: InversionConfig,
    paths: Sequence[str | Path],
    *,
    cache: ScoreCache | None = None,
    progress: bool = False,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[ScoredImage]:
    """Load and score image files chunk by chunk; unreadable files go to ``on_error(path, message)``."""
    channels, height, width = generator.image_shape
    for start in range(0, len(paths), CHUNK):
        loaded, errors = load_images(paths[start : start + CHUNK], channels, (height, width))
        for path, message in errors:
            if on_error:
                on_error(path, message)
        yield from score_loaded(generator, config, loaded, cache=cache, progress=progress)


def calibrate(
    generator: Generator,
    n: int = 100,
    *,
    config: InversionConfig | None = None,
    seed: int = 0,
    sample_dir: Sequence[str | Path] | None = None,
    reference_real: Sequence[str | Path] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> Calibration:
    """Build a calibration: invert ``n`` of the model's own images and keep their scores.

    Images are sampled from the model with ``seed`` and quantised exactly as saving to 8-bit PNG would
    (``sample_dir`` uses the user's saved samples instead, e.g. for models we cannot sample). With
    ``reference_real``, real images are scored too, enabling the second p-value.
    """
    config = config or InversionConfig()
    weight_hash = generator.weight_hash()
    cache = ScoreCache(generator, config, cache_dir, weight_hash=weight_hash)
    if sample_dir is not None:
        paths = find_images(sample_dir)[:n] if n else find_images(sample_dir)
        scores = [s.score for s in score_paths(generator, config, paths, cache=cache, progress=progress)]
        source = ",".join(str(p) for p in sample_dir)
    else:
        samples = quantize_8bit(generator.sample(n, seed=seed))
        keys = [image_key(x) for x in samples]
        scores = Inverter(generator, config)(samples, keys=keys, progress=progress).scores.tolist()
        source = "generated"
    reference = None
    if reference_real is not None:
        paths = find_images(reference_real)
        reference = [s.score for s in score_paths(generator, config, paths, cache=cache, progress=progress)]
    return Calibration(
        model_id=generator.id,
        weight_hash=weight_hash,
        image_shape=generator.image_shape,
        inversion=config,
        scores=np.array(scores),
        source=source,
        seed=None if sample_dir else seed,
        reference_scores=None if reference is None else np.array(reference),
        reference_source=None if reference_real is None else ",".join(str(p) for p in reference_real),
    )


#: An image counts as informative when more than this fraction of its values differ from its median value by more
#: than two 8-bit levels. A flat image (all black, all white, a few stray pixels) is reproduced by almost any
#: generator, so its reconstruction score says nothing about which model made it.
MIN_INFORMATIVE_FRACTION = 0.01


def informative(image: torch.Tensor) -> bool:
    """Whether an image ``[C, H, W]`` in [0, 1] carries enough structure for reconstruction to be evidence."""
    deviates = (image - image.median()).abs() > 2 / 255
    return float(deviates.float().mean()) > MIN_INFORMATIVE_FRACTION


#: Two JPEG quality estimates this close count as the same processing (the estimate is exact for IJG encoders).
JPEG_QUALITY_TOLERANCE = 2


def processing_family(processing: dict) -> str | None:
    """The processing an image's file shows, as a calibration's ``perturbation`` names it: ``"jpeg:Q"`` (IJG
    quality Q estimated from the quantisation tables), ``"webp:lossy"``, ``"resized"`` (decoded at a size other
    than the model's), or None where the file shows none (a lossless file at the model's size: pristine as far
    as anyone can tell from the file)."""
    if processing.get("native_size") is False:
        return "resized"
    if processing.get("jpeg_quality") is not None:
        return f"jpeg:{processing['jpeg_quality']}"
    if processing.get("lossy"):
        return "webp:lossy" if processing.get("webp") == "lossy" else f"{str(processing.get('format')).lower()}:lossy"
    return None


def covers(perturbation: str | None, family: str | None) -> bool:
    """Whether a calibration built for ``perturbation`` has error rates that hold for images of ``family``."""
    if perturbation is None or family is None:
        return perturbation == family
    if perturbation.startswith("jpeg:") and family.startswith("jpeg:"):
        try:
            return abs(int(perturbation[5:]) - int(family[5:])) <= JPEG_QUALITY_TOLERANCE
        except ValueError:
            return False
    return perturbation == family


def decide(
    score: float,
    calibration: Calibration,
    alpha: float,
    *,
    enough_information: bool = True,
    calibrated_processing: bool = True,
    typical_detail: bool = True,
) -> dict:
    """The decision fields of a record: p-values, Grubbs result, verdict and reason codes.

    ``member``: typical of the model's own images (conformal p > α) and, when reference real images are
    known, not typical of them. ``inconclusive``: typical of both, or an image with too little information
    (see :func:`informative`) for any verdict, or (``calibrated_processing`` False) an image processed in a way
    the calibration's samples were not (JPEG, lossy WebP, resized; reason ``processing_not_calibrated``): its
    scores move away from the calibration's (JPEG q90 alone takes the zoo DCGAN's members from the 8-bit floor to
    ~1e-4, where every one of them would be rejected), so neither verdict would have the stated error rates; or
    (``typical_detail`` False) an image with less fine detail than the model's own images, as resizing down and
    back or blurring leaves it (reason ``smoother_than_model``, see :mod:`imgorigin.verification.detail`). The
    p-values are still reported.
    """
    p_model = calibration.p_value(score)
    p_grubbs, grubbs_outlier = calibration.grubbs(score, alpha)
    p_real = calibration.p_value_real(score)
    like_model = p_model > alpha
    like_real = p_real is not None and p_real > alpha
    reasons = []
    if not calibration.in_range(score):
        reasons.append("outside_calibration_range")
    if grubbs_outlier == like_model:
        reasons.append("grubbs_disagrees")
    if not enough_information or not calibrated_processing or not typical_detail:
        verdict = INCONCLUSIVE
        if not enough_information:
            reasons.append("too_little_information")
        if not calibrated_processing:
            reasons.append("processing_not_calibrated")
        if not typical_detail:
            reasons.append("smoother_than_model")
    elif like_model and like_real:
        verdict = INCONCLUSIVE
        reasons.append("overlaps_real_reference")
        if calibration.reference_scores is not None and 1 / (calibration.reference_scores.size + 1) > alpha:
            reasons.append("reference_set_too_small")  # p_value_real can never reach alpha
    else:
        verdict = MEMBER if like_model else NON_MEMBER
    return {
        "p_value": p_model,
        "p_value_grubbs": p_grubbs,
        "grubbs_outlier": grubbs_outlier,
        "p_value_real": p_real,
        "belongs": verdict == MEMBER,
        "verdict": verdict,
        "reasons": reasons,
    }


class Verifier:
    """A generator bound to its calibration: scores images and turns scores into self-contained records.

    ``processed_calibrations``: more calibrations of the same model and inversion settings, each built on the
    model's own images processed one way (``Calibration.perturbation``, e.g. ``"jpeg:75"``). An image whose file
    shows processing (:func:`processing_family`) is decided against the calibration that covers it; without one
    it is ``inconclusive`` (``processing_not_calibrated``).

    ``detail_alpha``: an image decided against the pristine calibration whose share of fine detail is this
    unlikely among the model's own images (log-normal tail fitted to ``detail_samples`` of them) is ``inconclusive``
    (``smoother_than_model``): low-pass processing the file does not show (resized and back, blurred). None
    turns the check off. Its cost is sampling the model once (cached in ``cache_dir``).
    """

    def __init__(
        self,
        generator: Generator,
        calibration: Calibration,
        *,
        alpha: float = 0.05,
        cache_dir: str | Path | None = None,
        processed_calibrations: Sequence[Calibration] = (),
        detail_alpha: float | None = DEFAULT_ALPHA,
        detail_samples: int = 500,
    ) -> None:
        if not 0 < alpha < 1:
            raise UsageError(f"alpha must be in (0, 1), got {alpha}")
        if detail_alpha is not None and not 0 < detail_alpha < 1:
            raise UsageError(f"detail_alpha must be in (0, 1) or None, got {detail_alpha}")
        if detail_alpha is not None and detail_samples < 2:
            raise UsageError(f"detail_samples must be at least 2, got {detail_samples}")
        weight_hash = generator.weight_hash()  # once: every check and the score cache use it
        for checked in (calibration, *processed_calibrations):
            checked.check_model(generator.id, weight_hash, generator.image_shape)
        for extra in processed_calibrations:
            if extra.perturbation is None or extra.inversion != calibration.inversion:
                raise CalibrationError(
                    "a processed calibration needs its perturbation set and the main calibration's inversion settings"
                )
        self.processed_calibrations = list(processed_calibrations)
        self.generator, self.calibration, self.alpha = generator, calibration, alpha
        self.cache = ScoreCache(generator, calibration.inversion, cache_dir, weight_hash=weight_hash)
        self._weight_hash = weight_hash
        self.detail_alpha, self.detail_samples, self.cache_dir = detail_alpha, detail_samples, cache_dir
        self._detail: DetailReference | None = None

    def detail_p_value(self, image: torch.Tensor) -> float:
        """The p-value of an image ``[C, H, W]`` having as little fine detail as it has, among the model's own
        images (the reference is sampled on first use)."""
        if self._detail is None:
            self._detail = DetailReference.from_generator(
                self.generator, self.detail_samples, cache_dir=self.cache_dir, weight_hash=self._weight_hash
            )
        return self._detail.p_value(image)

    def add_reference_real(self, paths: Sequence[str | Path], progress: bool = False) -> int:
        """Score reference real images (cached) and use them for the second p-value; returns how many."""
        found = find_images(paths)
        scores = [
            s.score
            for s in score_paths(self.generator, self.calibration.inversion, found, cache=self.cache, progress=progress)
        ]
        self.calibration.reference_scores = np.sort(np.array(scores))
        self.calibration.reference_source = ",".join(str(p) for p in paths)
        return len(scores)

    def calibration_for(self, processing: dict) -> Calibration | None:
        """The calibration whose samples were processed as the image's file shows, or None."""
        family = processing_family(processing)
        for calibration in (self.calibration, *self.processed_calibrations):
            if covers(calibration.perturbation, family):
                return calibration
        return None

    def _decision(
        self, score: float, image: torch.Tensor, calibration: Calibration, *, calibrated_processing: bool = True
    ) -> dict:
        """The decision fields for one image ``[C, H, W]``, with every rule on the image itself applied."""
        p_detail = None
        if self.detail_alpha is not None and calibration.perturbation is None:
            p_detail = self.detail_p_value(image)
        decision = decide(
            score,
            calibration,
            self.alpha,
            enough_information=informative(image),
            calibrated_processing=calibrated_processing,
            typical_detail=p_detail is None or p_detail > self.detail_alpha,
        )
        decision["p_value_detail"] = p_detail
        return decision

    def record(self, scored: ScoredImage) -> dict:
        """The self-contained JSON record for one scored image."""
        image = scored.image
        matched = self.calibration_for(image.processing)
        calibration = matched or self.calibration
        processing = {**image.processing, "calibration": calibration.perturbation or "pristine"}
        record = {
            "path": image.path,
            "sha256": image.sha256,
            "width": image.width,
            "height": image.height,
            "format": image.format,
            "mode": image.mode,
            "processing": processing,
            "model": self.generator.id,
            "weight_hash": self._weight_hash,
            "method": METHOD,
            "version": __version__,
            "score": scored.score,
            "alpha": self.alpha,
            "threshold": calibration.threshold(self.alpha),
        }
        decision = self._decision(scored.score, image.tensor(), calibration, calibrated_processing=matched is not None)
        decision["reasons"] = list(image.reasons) + decision["reasons"]
        record.update(decision)
        record["seconds"] = round(scored.seconds, 4)
        record["cached"] = scored.cached
        return record

    def identity(self) -> dict:
        """What a run's verdicts depend on (model, weights, calibration, α, method, version): a results file records
        it, so that resuming it with another model, calibration or α is refused instead of mixing runs."""
        identity = {
            "task": "verify",
            "model": self.generator.id,
            "weight_hash": self._weight_hash,
            "calibration": self.calibration.digest(),
            "alpha": self.alpha,
            "method": METHOD,
            "version": __version__,
        }
        if self.processed_calibrations:
            identity["processed_calibrations"] = [c.digest() for c in self.processed_calibrations]
        if self.detail_alpha is not None:
            identity["detail"] = {"statistic": STATISTIC, "alpha": self.detail_alpha, "samples": self.detail_samples}
        return identity

    def verify_paths(self, paths: Sequence[str | Path], *, progress: bool = False) -> Iterator[dict]:
        """Records for image files and folders (searched recursively), in completion order. Inputs left out
        yield ``{"path", "skipped", "detail"}``; unreadable files, or a score that is not a number,
        ``{"path", "error"}``."""
        files, skipped = scan_inputs(paths)
        yield from skipped
        errors: list[dict] = []
        for scored in score_paths(
            self.generator,
            self.calibration.inversion,
            list(map(str, files)),
            cache=self.cache,
            progress=progress,
            on_error=lambda p, m: errors.append({"path": p, "error": f"{p}: {m}"}),
        ):
            yield from errors
            errors.clear()
            if math.isfinite(scored.score):
                yield self.record(scored)
            else:
                path = scored.image.path
                yield {"path": path, "error": f"{path}: the model's reconstruction distance is {scored.score}"}
        yield from errors

    def verify_tensors(self, images: torch.Tensor) -> list[dict]:
        """Decisions for in-memory images ``[N, C, H, W]`` in [0, 1] (no file fields)."""
        result = Inverter(self.generator, self.calibration.inversion)(images)
        return [
            {"score": float(s), **self._decision(float(s), image, self.calibration)}
            for s, image in zip(result.scores, images, strict=True)
        ]
