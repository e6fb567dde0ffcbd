"""The models and classifiers a server answers with, loaded once at start-up, and their public summaries.

Each engine turns stored image files into the library's records (the same records ``imgorigin verify`` and
``imgorigin attribute [--confirm]`` write) and holds a lock, so that one engine never runs in two threads at once.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from imgorigin.attribution.attributor import Attributor
from imgorigin.report import operating_point
from imgorigin.runtime import resolve_device
from imgorigin.service.config import ConfigError, ServeConfig
from imgorigin.service.errors import ServiceError
from imgorigin.twostage import Bindings, TwoStageAttributor
from imgorigin.verification import Calibration, Generator, Verifier, load_generator
from imgorigin.verification.detail import DEFAULT_ALPHA as DEFAULT_DETAIL_ALPHA
from imgorigin.verification.verifier import record_method

#: Verifiers kept per model for alphas other than the default (each shares the generator and calibration).
MAX_ALPHAS = 8


@dataclass(frozen=True)
class Options:
    """What a request chose besides the target: the level of verification, and two-stage confirmation."""

    alpha: float
    confirm: bool = False


def _finite(value: float) -> float | None:
    """A number JSON can carry (an infinite threshold means every score is accepted: null)."""
    return value if math.isfinite(value) else None


class ModelEngine:
    """A generator with its calibration: verification records for image files at any α."""

    kind = "verification"

    def __init__(
        self,
        id: str,
        generator: Generator,
        calibration: Calibration,
        alpha: float,
        cache_dir: Path | None,
        detail_alpha: float | None = DEFAULT_DETAIL_ALPHA,
    ):
        self.id, self.generator, self.calibration, self.cache_dir = id, generator, calibration, cache_dir
        self.alpha, self.detail_alpha = alpha, detail_alpha
        self.lock = threading.Lock()
        self._verifiers: OrderedDict[float, Verifier] = OrderedDict()
        self.verifier(alpha)

    @property
    def channels(self) -> int:
        """Channels the model's images have (uploads are checked by decoding them so)."""
        return self.generator.image_shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the model's images."""
        return tuple(self.generator.image_shape[1:])

    def verifier(self, alpha: float) -> Verifier:
        """The verifier at level α (made once per α; the least recently used beyond MAX_ALPHAS are dropped)."""
        if alpha not in self._verifiers:
            self._verifiers[alpha] = Verifier(
                self.generator, self.calibration, alpha=alpha, cache_dir=self.cache_dir, detail_alpha=self.detail_alpha
            )
            while len(self._verifiers) > MAX_ALPHAS:
                self._verifiers.popitem(last=False)
        self._verifiers.move_to_end(alpha)
        return self._verifiers[alpha]

    def records(self, paths: Sequence[str], options: Options) -> Iterator[dict]:
        """``imgorigin verify`` records of image files, in completion order (the caller holds ``lock``)."""
        return self.verifier(options.alpha).verify_paths(list(paths))

    def summary(self, alpha: float) -> dict:
        """What /v1/models says about the model: id, image shape, weights, calibration and operating point."""
        cal = self.calibration
        return {
            "id": self.id,
            "kind": self.kind,
            "method": record_method(cal),
            "image_shape": list(self.generator.image_shape),
            "weight_hash": cal.weight_hash,
            "calibration": {
                "n": int(cal.scores.size),
                "alpha": alpha,
                "threshold": _finite(cal.threshold(alpha)),
                "source": cal.source,
                "reference_real_n": None if cal.reference_scores is None else int(cal.reference_scores.size),
                "digest": cal.digest(),
                "created": cal.created,
            },
            "operating_point": operating_point(cal, alpha),
        }

    def calibration_view(self, alpha: float) -> dict:
        """The calibration scores behind the decisions, for plotting an image's score against them."""
        cal = self.calibration
        return {
            "id": self.id,
            "alpha": alpha,
            "threshold": _finite(cal.threshold(alpha)),
            "floor": cal.floor,
            "scores": cal.scores.tolist(),
            "reference_scores": None if cal.reference_scores is None else cal.reference_scores.tolist(),
            "operating_point": operating_point(cal, alpha),
        }


class ClassifierEngine:
    """An open-set classifier (and, with two_stage, its bound models): attribution records for image files."""

    kind = "attribution"
    channels = 3
    size = None

    def __init__(self, id: str, attributor: Attributor, two_stage: TwoStageAttributor | None) -> None:
        self.id, self.attributor, self.two_stage = id, attributor, two_stage
        self.lock = threading.Lock()

    def records(self, paths: Sequence[str], options: Options) -> Iterator[dict]:
        """``imgorigin attribute`` records (``--confirm`` ones with ``options.confirm``) of image files."""
        if options.confirm:
            if self.two_stage is None:
                raise ServiceError(
                    422, "confirm_unavailable", f"classifier {self.id!r} is not served with two-stage confirmation"
                )
            return self.two_stage.attribute_paths(list(paths))
        return self.attributor.attribute_paths(list(paths))

    def summary(self, alpha: float) -> dict:
        """What /v1/classifiers says: classes, features, rejection rule, bound models and the rule in words."""
        clf, spec = self.attributor.classifier, self.attributor.spec
        words = (
            f"Features from {spec.id} (layer {spec.layer}); an image gets its most likely known class when its "
            f"{clf.rejection} score is at least {clf.threshold_:.4g}, a threshold that accepts "
            f"{clf.accept_rate:.0%} of held-out known images; otherwise it is 'unknown'."
        )
        bound = {}
        if self.two_stage is not None:
            alpha = self.two_stage.alpha
            bound = self.two_stage.bindings.models()
            words += (
                f" With confirm, a class bound to a model is answered only when verification against that model "
                f"accepts the image at α = {alpha} (at most {alpha:.0%} of the model's own images are rejected)."
            )
        return {
            "id": self.id,
            "kind": self.kind,
            "classes": clf.classes_.tolist(),
            "backbone": spec.id,
            "layer": spec.layer,
            "rejection": clf.rejection,
            "accept_rate": clf.accept_rate,
            "threshold": _finite(clf.threshold_),
            "confirm": self.two_stage is not None,
            "bound": bound,
            "alpha": None if self.two_stage is None else self.two_stage.alpha,
            "operating_point": words,
        }


class Engines:
    """Every configured engine by id, and the server-side strings their answers must not show."""

    def __init__(
        self, models: dict[str, ModelEngine], classifiers: dict[str, ClassifierEngine], replacements: dict[str, str]
    ) -> None:
        self.models, self.classifiers, self.replacements = models, classifiers, replacements

    @classmethod
    def load(cls, config: ServeConfig) -> Engines:
        """Load every model, calibration and classifier of the config (slow: done once, at start-up)."""
        device = resolve_device(config.device)
        replacements = public_names(config)
        models = {}
        for entry in config.models:
            calibration = Calibration.load(entry.calibration)
            generator = load_generator(entry.model, device=device, sampler=calibration.sampler)
            models[entry.id] = ModelEngine(
                entry.id, generator, calibration, config.alpha, config.cache_dir, config.detail_alpha
            )
            replacements[generator.id] = entry.id
            replacements[calibration.source] = f"{entry.id} calibration samples"
            replacements[calibration.reference_source or ""] = f"{entry.id} reference real images"
        classifiers = {}
        for entry in config.classifiers:
            attributor = Attributor.load(entry.path, cache_dir=config.cache_dir, device=device)
            two_stage = None
            if entry.two_stage:
                bindings = Bindings.load(entry.path)
                if not bindings:
                    raise ConfigError(f"classifier {entry.id!r}: two_stage = true, but no class is bound to a model")
                two_stage = TwoStageAttributor(
                    attributor,
                    bindings,
                    alpha=config.alpha,
                    device=device,
                    cache_dir=config.cache_dir,
                    detail_alpha=config.detail_alpha,
                )
                two_stage.load_verifiers()
                for label, binding in bindings.items():
                    for old, new in _binding_paths(entry.id, label, binding.model, binding.calibration).items():
                        replacements.setdefault(old, new)  # a served model keeps its own id
            classifiers[entry.id] = ClassifierEngine(entry.id, attributor, two_stage)
        return cls(models, classifiers, {old: new for old, new in replacements.items() if _server_side(old)})

    def model(self, id: str | None) -> ModelEngine:
        """The model a request names, or 404 unknown_model."""
        if id not in self.models:
            raise ServiceError(
                404, "unknown_model", f"no model {id!r} is served; GET /v1/models lists them ({', '.join(self.models)})"
            )
        return self.models[id]

    def classifier(self, id: str | None) -> ClassifierEngine:
        """The classifier a request names, or 404 unknown_classifier."""
        if id not in self.classifiers:
            raise ServiceError(
                404,
                "unknown_classifier",
                f"no classifier {id!r} is served; GET /v1/classifiers lists them ({', '.join(self.classifiers)})",
            )
        return self.classifiers[id]


def public_names(config: ServeConfig) -> dict[str, str]:
    """Public names for the server-side paths a config names (known before anything loads, so that even a
    load error can be shown): work and cache folders, model files, calibrations and classifier folders."""
    names = {str(config.work_dir): "<server>"}
    if config.cache_dir is not None:
        names[str(config.cache_dir)] = "<server>"
    for model in config.models:
        names.setdefault(model.model, model.id)
        names.setdefault(model.calibration, f"{model.id} calibration")
    for classifier in config.classifiers:
        names.setdefault(classifier.path, classifier.id)
    return {old: new for old, new in names.items() if _server_side(old)}


def _server_side(text: str) -> bool:
    """Whether a string names something on the server's disk (model specs like ``zoo:dcgan`` stay as they are)."""
    return "/" in text or "\\" in text


def _binding_paths(classifier: str, label: str, model: str, calibration: str | None) -> dict[str, str]:
    """Public names for a bound model's file and calibration, as written and resolved."""
    names = {}
    for text, name in ((model, f"{classifier}:{label} model"), (calibration, f"{classifier}:{label} calibration")):
        if text:
            names[text] = names[str(Path(text).resolve())] = name
    return names
