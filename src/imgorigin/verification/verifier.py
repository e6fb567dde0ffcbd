"""Verification: "did this model generate this image?", from image files to self-contained JSON records.

Flow: files → :mod:`imgorigin.images` → batched :class:`~imgorigin.verification.inversion.Inverter` → score →
decision against a :class:`~imgorigin.verification.calibration.Calibration` → one record per image.
Scores are cached by image content hash, model weights and inversion settings, so reruns and resumed
batches never invert an image twice.

Models with an encoder have a training-free fast path (:mod:`imgorigin.verification.fastpath`): the same flow
with AEDR's double-reconstruction score in place of the inversion, decided against a calibration of its own
kind. ``method="screen"`` scores every image the fast way and inverts only those the fast score cannot reject.
"""

from __future__ import annotations

import dataclasses
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
from imgorigin.labels import INCONCLUSIVE, INCONCLUSIVE_REASONS, MEMBER, NON_MEMBER
from imgorigin.verification.calibration import Calibration, CalibrationError
from imgorigin.verification.detail import DEFAULT_ALPHA, STATISTIC, DetailReference
from imgorigin.verification.fastpath import (
    INVERSION,
    RECORD_METHODS,
    FastConfig,
    fast_scores,
    require_fast,
)
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.initializer import (
    LEARNED_START,
    InitializerConfig,
    LearnedInit,
    to_bytes,
    train_initializer,
)
from imgorigin.verification.inversion import InversionConfig, Inverter, image_key
from imgorigin.verification.profile import PROFILE_SHARE, fitted
from imgorigin.verification.retries import MAX_AUTO_RETRIES, choose_retries
from imgorigin.version import __version__

METHOD = "ronan-inversion"


def record_method(calibration: Calibration) -> str:
    """The ``method`` a record decided against ``calibration`` names: the inversion's, or its fast score's."""
    return RECORD_METHODS[calibration.method] if calibration.is_fast else METHOD


#: Images loaded and inverted per chunk in batch runs: bounds memory while records stream out.
CHUNK = 256
#: What ``Verifier(method=...)`` accepts: inversion only, the fast path only, or fast screening then inversion.
METHODS = ("inversion", "fast", "screen")
#: Screening: by default the fast stage rejects at this fraction of α and the inversion decides the rest at the
#: remaining α − α/5, so that by the union bound at most α of the model's own images are rejected in all.
SCREEN_SHARE = 0.2
#: Reasons that make a screening verdict ``inconclusive`` at the fast stage: they hold for the inversion as well.
SCREEN_FINAL_REASONS = ("too_little_information", "smoother_than_model", "processing_not_calibrated")


class ScoreCache:
    """Append-only JSON-lines store of scores for one (model weights, method and settings) pair.

    Inversion scores are keyed by the inversion settings (as they always were); fast-path scores by
    :meth:`FastConfig.cache_settings`, which names the method, so the two kinds never share a file.
    """

    def __init__(
        self,
        generator: Generator,
        config: InversionConfig | FastConfig,
        cache_dir: str | Path | None,
        *,
        weight_hash: str | None = None,
    ) -> None:
        """``weight_hash``: the generator's, when the caller has it already (hashing large weights takes seconds)."""
        self.scores: dict[str, float] = {}
        self.parts: dict[str, dict] = {}
        self.path: Path | None = None
        if cache_dir is None:
            return
        key_settings = config.cache_settings() if isinstance(config, FastConfig) else config.to_dict()
        settings = json.dumps(key_settings, sort_keys=True)
        weights = weight_hash or generator.weight_hash()
        learned = generator.init_sha256  # a learned initialiser: its own scores
        identity = f"{weights}|{settings}|{generator.image_shape}" + ("" if learned is None else f"|{learned}")
        key = hashlib.sha256(identity.encode()).hexdigest()
        self.path = Path(cache_dir) / "scores" / f"{key[:32]}.jsonl"
        data = self.path.read_bytes() if self.path.is_file() else b""
        self._torn = bool(data) and not data.endswith(b"\n")  # a run killed mid-line: start the next on a new one
        if data:
            for line in data.splitlines():
                entry = _cache_entry(line)
                if entry is not None:
                    self.scores[entry[0]] = entry[1]
                    if entry[2] is not None:
                        self.parts[entry[0]] = entry[2]

    def get(self, sha256: str) -> float | None:
        """The cached score of an image, or None."""
        return self.scores.get(sha256)

    def put(self, sha256: str, score: float, parts: dict | None = None) -> None:
        """Record a score and optionally its parts (in memory, and on disk when the cache has a directory)."""
        self.scores[sha256] = score
        if parts is not None:
            self.parts[sha256] = parts
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            entry = {"sha256": sha256, "score": score, **({} if parts is None else {"parts": parts})}
            with self.path.open("a") as f:
                f.write(("\n" if self._torn else "") + json.dumps(entry) + "\n")
            self._torn = False


def _cache_entry(line: bytes) -> tuple[str, float, dict | None] | None:
    """(sha256, score, parts) of one cache line, or None for a line that is cut short, corrupt or not a valid
    score (NaN, negative, not a number): such an image is simply scored again and its new line wins."""
    try:
        entry = json.loads(line)
        sha256, score = entry["sha256"], entry["score"]
    except (ValueError, KeyError, TypeError):
        return None
    valid = isinstance(sha256, str) and isinstance(score, int | float) and not isinstance(score, bool)
    parts = entry.get("parts")
    parts = parts if isinstance(parts, dict) else None
    return (sha256, float(score), parts) if valid and math.isfinite(score) and score >= 0 else None


@dataclass
class ScoredImage:
    """An image and its score (``seconds``: wall time since the previous image of its batch finished; ``parts``:
    the fast score's components ``first``, ``second``, ``homogeneity``, None for inversion scores)."""

    image: LoadedImage
    score: float
    seconds: float
    cached: bool
    parts: dict | None = None


def score_loaded(
    generator: Generator,
    config: InversionConfig | FastConfig,
    images: Sequence[LoadedImage],
    *,
    cache: ScoreCache | None = None,
    progress: bool = False,
) -> Iterator[ScoredImage]:
    """Score loaded images (cached ones are not recomputed), yielding each as soon as it is scored: inverted
    with an :class:`InversionConfig`, double-reconstructed with a :class:`FastConfig`."""
    pending = []
    for image in images:
        cached = cache.get(image.sha256) if cache else None
        if cached is not None:
            yield ScoredImage(image, cached, 0.0, True, cache.parts.get(image.sha256) if cache else None)
        else:
            pending.append(image)
    if not pending:
        return
    if isinstance(config, FastConfig):
        yield from _fast_scored(generator, config, pending, cache)
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


def _fast_scored(
    generator: Generator, config: FastConfig, pending: Sequence[LoadedImage], cache: ScoreCache | None
) -> Iterator[ScoredImage]:
    """Fast scores of images not in the cache, a batch at a time (each image gets its share of the batch's time)."""
    for start in range(0, len(pending), config.batch_size):
        batch = pending[start : start + config.batch_size]
        began = time.perf_counter()
        fast = fast_scores(generator, torch.stack([img.tensor() for img in batch]), config)
        share = (time.perf_counter() - began) / len(batch)
        for k, image in enumerate(batch):
            parts = fast.parts(k)
            score = float(fast.scores[k])
            if cache and math.isfinite(score):
                cache.put(image.sha256, score, parts)
            yield ScoredImage(image, score, share, False, parts)


def score_paths(
    generator: Generator,
    config: InversionConfig | FastConfig,
    paths: Sequence[str | Path],
    *,
    cache: ScoreCache | None = None,
    progress: bool = False,
    on_error: Callable[[str, str], None] | None = None,
) -> Iterator[ScoredImage]:
    """Load and score image files chunk by chunk; unreadable files go to ``on_error(path, message)``."""
    for loaded in load_chunks(generator, paths, on_error):
        yield from score_loaded(generator, config, loaded, cache=cache, progress=progress)


def load_chunks(
    generator: Generator, paths: Sequence[str | Path], on_error: Callable[[str, str], None] | None = None
) -> Iterator[list[LoadedImage]]:
    """Image files loaded at the model's channels and size, :data:`CHUNK` at a time."""
    channels, height, width = generator.image_shape
    for start in range(0, len(paths), CHUNK):
        loaded, errors = load_images(paths[start : start + CHUNK], channels, (height, width))
        for path, message in errors:
            if on_error:
                on_error(path, message)
        yield loaded


def calibrate(
    generator: Generator,
    n: int = 100,
    *,
    config: InversionConfig | FastConfig | None = None,
    seed: int = 0,
    sample_dir: Sequence[str | Path] | None = None,
    reference_real: Sequence[str | Path] | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    auto_retries: int = MAX_AUTO_RETRIES,
    learned_init: bool = True,
    initializer: InitializerConfig | None = None,
    profile_share: float = PROFILE_SHARE,
) -> Calibration:
    """Build a calibration: invert ``n`` of the model's own images and keep their scores.

    Images are sampled from the model with ``seed`` and quantised exactly as saving to 8-bit PNG would
    (``sample_dir`` uses the user's saved samples instead, e.g. for models we cannot sample). With
    ``reference_real``, real images are scored too, enabling the second p-value. A :class:`FastConfig` makes a
    fast-path calibration of its ``score`` (no inversion): ``double-reconstruction`` (a model with an encoder) or
    ``denoising-profile`` (a pixel diffusion model: the profile is fitted on the first ``profile_share`` of the
    samples and the calibration keeps the distances of the rest, so they are scored as a new image would be).
    ``auto_retries`` > 0: the inversion's ``retries`` is chosen from the samples, at most this many
    (:func:`~imgorigin.verification.retries.choose_retries`); 0 keeps ``config.retries`` as given.
    ``learned_init``: ``init="auto"`` on a model without an encoder whose latent the refinement handles trains a
    learned initialiser (``initializer``'s settings) and inverts from it (:func:`learned_start`); False keeps
    auto's search. ``init="learned"`` always trains one.
    """
    config = config or InversionConfig()
    fast = isinstance(config, FastConfig)
    weight_hash = generator.weight_hash()
    retry_search = None
    trained: tuple[bytes, dict] | None = None
    if fast:
        require_fast(generator, config)
    else:
        config, trained = learned_start(generator, config, learned_init, initializer, progress)
        if trained is not None and not isinstance(generator, LearnedInit):
            generator = LearnedInit(generator, *trained)
    paths = (find_images(sample_dir)[:n] if n else find_images(sample_dir)) if sample_dir is not None else []
    profile = fast and config.is_profile
    if sample_dir is not None and ((fast and not profile) or not auto_retries):  # scored as the files stream in
        cache = ScoreCache(generator, config, cache_dir, weight_hash=weight_hash)
        scores = [s.score for s in score_paths(generator, config, paths, cache=cache, progress=progress)]
    else:
        if sample_dir is not None:
            loaded = [img for chunk in load_chunks(generator, paths) for img in chunk]
            samples, keys = torch.stack([img.tensor() for img in loaded]), [img.sha256 for img in loaded]
        else:
            samples = quantize_8bit(generator.sample(n, seed=seed))
            keys = [image_key(x) for x in samples]
        if profile:
            config, scores = fit_and_score_profile(generator, config, samples, profile_share)
        elif fast:
            scores = fast_scores(generator, samples, config).scores.tolist()
        elif auto_retries:
            config, scores, retry_search = choose_retries(
                generator, config, samples, keys, max_retries=auto_retries, progress=progress
            )
        else:
            scores = Inverter(generator, config)(samples, keys=keys, progress=progress).scores.tolist()
    source = ",".join(str(p) for p in sample_dir) if sample_dir is not None else "generated"
    cache = ScoreCache(generator, config, cache_dir, weight_hash=weight_hash)
    reference = None
    if reference_real is not None:
        paths = find_images(reference_real)
        reference = [s.score for s in score_paths(generator, config, paths, cache=cache, progress=progress)]
    return Calibration(
        model_id=generator.id,
        weight_hash=weight_hash,
        image_shape=generator.image_shape,
        inversion=InversionConfig() if fast else config,
        scores=np.array(scores),
        source=source,
        seed=None if sample_dir else seed,
        reference_scores=None if reference is None else np.array(reference),
        reference_source=None if reference_real is None else ",".join(str(p) for p in reference_real),
        method=config.score if fast else INVERSION,
        fast=config if fast else None,
        retry_search=None if retry_search is None else retry_search.to_dict(),
        sampler=getattr(generator, "sampler", None),
        initializer=None if trained is None else trained[0],
        initializer_training=None if trained is None else trained[1],
    )


def fit_and_score_profile(
    generator: Generator, config: FastConfig, samples: torch.Tensor, share: float = PROFILE_SHARE
) -> tuple[FastConfig, list[float]]:
    """Fit the denoising profile on the first ``share`` of the model's own ``samples`` and score the rest against
    it: the settings with the fitted profile, and the held-out samples' distances (the calibration scores)."""
    if not 0 < share < 1:
        raise UsageError(f"profile_share must be in (0, 1), got {share}")
    n_fit = int(round(share * len(samples)))
    if n_fit < 1 or n_fit >= len(samples) - 1:
        raise UsageError(f"{len(samples)} samples cannot be split into a profile fit and at least 2 calibration scores")
    config = fitted(generator, config, samples[:n_fit])
    return config, fast_scores(generator, samples[n_fit:], config).scores.tolist()


def learned_start(
    generator: Generator,
    config: InversionConfig,
    allowed: bool = True,
    settings: InitializerConfig | None = None,
    progress: bool = False,
) -> tuple[InversionConfig, tuple[bytes, dict] | None]:
    """The inversion settings a calibration uses and, when they start from a learned initialiser, its bytes and
    training record: ``init="learned"``, or ``"auto"`` (with ``allowed``) on a model without an encoder whose
    latent the refinement handles, which also sets :data:`LEARNED_START` (one start, refined at once). A generator
    already bound to an initialiser (:meth:`Calibration.bind`, with ``init="learned"``) keeps it: a calibration on
    processed samples starts from the same latents as the pristine one."""
    if isinstance(generator, LearnedInit):
        if config.init != "learned":
            raise UsageError(f"model {generator.id} is bound to a learned initialiser: calibrate it with init learned")
        return config, (generator.data, generator.training or {})
    if generator.has_encoder and config.init == "learned":
        raise UsageError(f"model {generator.id} has its own encoder: use init encoder (or auto), not learned")
    chosen = config.init == "auto" and allowed and not generator.has_encoder and Inverter(generator, config).refines
    if config.init != "learned" and not chosen:
        return config, None
    settings = settings or InitializerConfig()
    began = time.perf_counter()
    data = to_bytes(train_initializer(generator, settings, progress=progress))
    record = {**settings.to_dict(), "seconds": round(time.perf_counter() - began, 1)}
    overrides = LEARNED_START if chosen else {}
    return dataclasses.replace(config, init="learned", **overrides), (data, record)


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
    withheld: Sequence[str] = (),
) -> dict:
    """The decision fields of a record: p-values, Grubbs result, verdict and reason codes.

    ``member``: typical of the model's own images (conformal p > α) and, when reference real images are
    known, not typical of them. ``inconclusive``: typical of both, or an image the rules on the image itself
    withhold a verdict from (``withheld``, reason codes of :data:`~imgorigin.labels.INCONCLUSIVE_REASONS`): too
    little information (``too_little_information``, see :func:`informative`), or an image processed in a way
    the calibration's samples were not (JPEG, lossy WebP, resized; reason ``processing_not_calibrated``): its
    scores move away from the calibration's (JPEG q90 alone takes the zoo DCGAN's members from the 8-bit floor to
    ~1e-4, where every one of them would be rejected), so neither verdict would have the stated error rates; or
    an image with less fine detail than the model's own images, as resizing down and
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
    unknown = [r for r in withheld if r not in INCONCLUSIVE_REASONS]
    if unknown:
        raise ValueError(f"not reasons that withhold a verdict: {unknown}")
    if withheld:
        verdict = INCONCLUSIVE
        reasons.extend(withheld)
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

    ``method``: ``inversion`` (invert every image; the calibration must be an inversion calibration), ``fast``
    (AEDR's double-reconstruction score, no optimisation; a fast calibration, a model with an encoder) or
    ``screen`` (``calibration`` the inversion one, ``fast_calibration`` the fast one: every image gets the fast
    score first; an image whose fast p-value is at most ``screen_reject`` is ``non_member`` on the fast score
    alone, one above ``screen_accept`` (None: never) is decided by the fast score too, and every other image is
    inverted and decided by the inversion at α − ``screen_reject``. By the union bound at most α of the model's
    own images are rejected in all; ``screen_reject`` defaults to α/5). None: the calibration's own method.
    A calibration of the other kind is refused. :attr:`stats` counts images per stage.

    ``processed_calibrations``: more calibrations of the same model and settings, each built on the model's own
    images processed one way (``Calibration.perturbation``, e.g. ``"jpeg:75"``). An image whose file shows
    processing (:func:`processing_family`) is decided against the calibration that covers it; without one it is
    ``inconclusive`` (``processing_not_calibrated``). Not with ``screen``.

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
        method: str | None = None,
        fast_calibration: Calibration | None = None,
        screen_reject: float | None = None,
        screen_accept: float | None = None,
    ) -> None:
        if not 0 < alpha < 1:
            raise UsageError(f"alpha must be in (0, 1), got {alpha}")
        if detail_alpha is not None and not 0 < detail_alpha < 1:
            raise UsageError(f"detail_alpha must be in (0, 1) or None, got {detail_alpha}")
        if detail_alpha is not None and detail_samples < 2:
            raise UsageError(f"detail_samples must be at least 2, got {detail_samples}")
        method = method or ("fast" if calibration.is_fast else "inversion")
        if method not in METHODS:
            raise UsageError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        calibration.require_method("fast" if method == "fast" else INVERSION)
        if method == "screen":
            if fast_calibration is None:
                raise UsageError("method 'screen' needs a fast calibration (`imgorigin calibrate MODEL --method fast`)")
            fast_calibration.require_method("fast")
            if processed_calibrations:
                raise UsageError("method 'screen' does not take processed calibrations")
            screen_reject = alpha * SCREEN_SHARE if screen_reject is None else screen_reject
            if not 0 <= screen_reject < alpha:
                raise UsageError(f"screen_reject must be in [0, alpha={alpha}), got {screen_reject}")
            if screen_accept is not None and not screen_reject < screen_accept <= 1:
                raise UsageError(f"screen_accept must be in (screen_reject, 1] or None, got {screen_accept}")
        elif fast_calibration is not None or screen_reject is not None or screen_accept is not None:
            raise UsageError("fast_calibration, screen_reject and screen_accept belong to method 'screen'")
        if method != "inversion":  # the fast score's own requirement (an encoder, or a diffusion UNet)
            require_fast(generator, (fast_calibration if method == "screen" else calibration).fast)
        weight_hash = generator.weight_hash()  # once: every check and the score cache use it
        for checked in (calibration, *processed_calibrations, *([fast_calibration] if fast_calibration else [])):
            checked.check_model(generator.id, weight_hash, generator.image_shape, getattr(generator, "sampler", None))
        for extra in processed_calibrations:
            if (
                extra.perturbation is None
                or extra.method != calibration.method
                or extra.settings != calibration.settings
                or extra.initializer != calibration.initializer
            ):
                raise CalibrationError(
                    "a processed calibration needs its perturbation set and the main calibration's method and settings"
                )
        generator = calibration.bind(generator)  # its learned initialiser, when it has one
        self.method = method
        self.processed_calibrations = list(processed_calibrations)
        self.generator, self.calibration, self.alpha = generator, calibration, alpha
        self.fast_calibration = fast_calibration
        self.screen_reject, self.screen_accept = screen_reject, screen_accept
        self.cache = ScoreCache(generator, calibration.settings, cache_dir, weight_hash=weight_hash)
        self.fast_cache = (
            ScoreCache(generator, fast_calibration.settings, cache_dir, weight_hash=weight_hash)
            if fast_calibration is not None
            else None
        )
        self._weight_hash = weight_hash
        self.detail_alpha, self.detail_samples, self.cache_dir = detail_alpha, detail_samples, cache_dir
        self._detail: DetailReference | None = None
        #: Images decided per stage in this verifier's runs: ``fast`` (by the fast score) and ``inversion``.
        self.stats = {"fast": 0, "inversion": 0}

    def detail_p_value(self, image: torch.Tensor) -> float:
        """The p-value of an image ``[C, H, W]`` having as little fine detail as it has, among the model's own
        images (the reference is sampled on first use)."""
        if self._detail is None:
            self._detail = DetailReference.from_generator(
                self.generator, self.detail_samples, cache_dir=self.cache_dir, weight_hash=self._weight_hash
            )
        return self._detail.p_value(image)

    def _scorers(self) -> list[tuple[Calibration, ScoreCache]]:
        """Every (calibration, cache) pair this verifier scores with: one, or two when screening."""
        pairs = [(self.calibration, self.cache)]
        if self.fast_calibration is not None and self.fast_cache is not None:
            pairs.append((self.fast_calibration, self.fast_cache))
        return pairs

    def add_reference_real(self, paths: Sequence[str | Path], progress: bool = False) -> int:
        """Score reference real images (cached) and use them for the second p-value; returns how many. When
        screening, they are scored both ways (each calibration gets its own kind of reference scores)."""
        found = find_images(paths)
        for calibration, cache in self._scorers():
            scores = [
                s.score
                for s in score_paths(self.generator, calibration.settings, found, cache=cache, progress=progress)
            ]
            calibration.reference_scores = np.sort(np.array(scores))
            calibration.reference_source = ",".join(str(p) for p in paths)
        return len(found)

    def calibration_for(self, processing: dict) -> Calibration | None:
        """The calibration whose samples were processed as the image's file shows, or None."""
        family = processing_family(processing)
        for calibration in (self.calibration, *self.processed_calibrations):
            if covers(calibration.perturbation, family):
                return calibration
        return None

    def _decision(
        self,
        score: float,
        image: torch.Tensor,
        calibration: Calibration,
        *,
        calibrated_processing: bool = True,
        alpha: float | None = None,
    ) -> dict:
        """The decision fields for one image ``[C, H, W]``, with every rule on the image itself applied."""
        p_detail = None
        if self.detail_alpha is not None and calibration.perturbation is None:
            p_detail = self.detail_p_value(image)
        withheld = [
            reason
            for reason, holds in (
                ("too_little_information", not informative(image)),
                ("processing_not_calibrated", not calibrated_processing),
                ("smoother_than_model", p_detail is not None and p_detail <= self.detail_alpha),
            )
            if holds
        ]
        decision = decide(score, calibration, self.alpha if alpha is None else alpha, withheld=withheld)
        decision["p_value_detail"] = p_detail
        return decision

    def record(
        self, scored: ScoredImage, *, calibration: Calibration | None = None, alpha: float | None = None
    ) -> dict:
        """The self-contained JSON record for one scored image. ``calibration``: the one whose kind of score
        ``scored`` holds (default: the verifier's main one, or the processed one that covers the image); ``alpha``:
        the level of this decision (default: the verifier's)."""
        image = scored.image
        alpha = self.alpha if alpha is None else alpha
        if calibration is None:
            matched = self.calibration_for(image.processing)
            calibration = matched or self.calibration
        else:
            matched = calibration if covers(calibration.perturbation, processing_family(image.processing)) else None
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
            "method": record_method(calibration),
            "version": __version__,
            "score": scored.score,
            "alpha": alpha,
            "threshold": calibration.threshold(alpha),
        }
        decision = self._decision(
            scored.score, image.tensor(), calibration, calibrated_processing=matched is not None, alpha=alpha
        )
        decision["reasons"] = list(image.reasons) + decision["reasons"]
        record.update(decision)
        if calibration.is_fast:
            record["score_parts"] = scored.parts
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
            "method": "screen" if self.method == "screen" else record_method(self.calibration),
            "version": __version__,
        }
        if self.method == "screen" and self.fast_calibration is not None:
            identity["screen"] = {
                "fast_calibration": self.fast_calibration.digest(),
                "reject": self.screen_reject,
                "accept": self.screen_accept,
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

        def on_error(path: str, message: str) -> None:
            errors.append({"path": path, "error": f"{path}: {message}"})

        for loaded in load_chunks(self.generator, list(map(str, files)), on_error):
            yield from errors
            errors.clear()
            if self.method == "screen":
                yield from self._screen(loaded, progress)
                continue
            stage = "fast" if self.method == "fast" else "inversion"
            for scored in score_loaded(
                self.generator, self.calibration.settings, loaded, cache=self.cache, progress=progress
            ):
                if math.isfinite(scored.score):
                    self.stats[stage] += 1
                    yield self.record(scored)
                else:
                    yield _not_a_number(scored)
        yield from errors

    def _screen(self, loaded: Sequence[LoadedImage], progress: bool) -> Iterator[dict]:
        """Screening records for one chunk: fast-decided images first, then the inverted rest as each finishes."""
        fast_calibration, reject, accept = self.fast_calibration, self.screen_reject, self.screen_accept
        assert fast_calibration is not None and reject is not None
        undecided: list[LoadedImage] = []
        fast_fields: dict[str, dict] = {}
        for scored in score_loaded(self.generator, fast_calibration.settings, loaded, cache=self.fast_cache):
            if not math.isfinite(scored.score):
                yield _not_a_number(scored)
                continue
            record = self.record(scored, calibration=fast_calibration)
            p = record["p_value"]
            # the image's own rules (too little information, smoother than the model, processing no calibration
            # covers: screening takes no processed calibrations) make any verdict inconclusive whatever the score,
            # so the inversion would add nothing
            own_rule = any(r in record["reasons"] for r in SCREEN_FINAL_REASONS)
            if own_rule or p <= reject or (accept is not None and p > accept):
                record["screen"] = {"stage": "fast", "alpha": self.alpha, "reject_at": reject, "accept_above": accept}
                self.stats["fast"] += 1
                yield record
            else:
                undecided.append(scored.image)
                fast_fields[scored.image.sha256] = {
                    "score_fast": scored.score,
                    "p_value_fast": p,
                    "score_parts_fast": scored.parts,
                    "seconds_fast": round(scored.seconds, 4),
                }
        alpha_inversion = self.alpha - reject
        for scored in score_loaded(
            self.generator, self.calibration.settings, undecided, cache=self.cache, progress=progress
        ):
            if not math.isfinite(scored.score):
                yield _not_a_number(scored)
                continue
            record = self.record(scored, calibration=self.calibration, alpha=alpha_inversion)
            record["screen"] = {
                "stage": "inversion",
                "alpha": self.alpha,
                "reject_at": reject,
                "accept_above": accept,
                **fast_fields[scored.image.sha256],
            }
            self.stats["inversion"] += 1
            yield record

    def verify_tensors(self, images: torch.Tensor) -> list[dict]:
        """Decisions for in-memory images ``[N, C, H, W]`` in [0, 1] (no file fields; inversion or fast method)."""
        if self.method == "screen":
            raise UsageError("verify_tensors does not screen; use verify_paths")
        if self.calibration.is_fast:
            scores = fast_scores(self.generator, images, self.calibration.fast).scores
        else:
            scores = Inverter(self.generator, self.calibration.inversion)(images).scores
        return [
            {"score": float(s), **self._decision(float(s), image, self.calibration)}
            for s, image in zip(scores, images, strict=True)
        ]


def _not_a_number(scored: ScoredImage) -> dict:
    path = scored.image.path
    return {"path": path, "error": f"{path}: the model's reconstruction distance is {scored.score}"}
