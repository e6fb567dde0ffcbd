"""What a server may use, read from a TOML file (``tomllib``) or, without one, the shipped zoo models.

A config names everything by id: requests choose a model or classifier by its configured id and never name a
server-side path. Relative paths in the file are resolved against the file's folder. API keys are stored as
sha256 hashes, or read from an environment variable when the server starts; a key never appears in the file.
Unknown keys are errors, so a typo cannot silently drop a limit. See :data:`EXAMPLE` for every setting.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from imgorigin.errors import ImgoriginError
from imgorigin.images import DEFAULT_MAX_PIXELS
from imgorigin.runtime import default_cache_dir
from imgorigin.verification import CalibrationError, default_calibration
from imgorigin.verification.detail import DEFAULT_ALPHA as DEFAULT_DETAIL_ALPHA

#: Environment variable read for API keys when no config file is given (comma-separated ``NAME=KEY`` or ``KEY``).
KEYS_ENV = "IMGORIGIN_API_KEYS"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MiB = 1024 * 1024

EXAMPLE = """\
# imgorigin serve --config serve.toml
alpha = 0.05                 # default significance level of /v1/verify (a request may give its own)
detail_alpha = 0.001         # images smoother than the model's own -> inconclusive (resized, blurred); 0: off
device = "auto"              # auto | cpu | cuda | cuda:N
work_dir = "serve-data"      # job database (SQLite) and uploads in flight; default <cache>/serve
cache_dir = "cache"          # score/feature cache; default $IMGORIGIN_CACHE or ~/.cache/imgorigin; "": none

[limits]
max_request_bytes = 33554432 # body of /v1/verify and /v1/attribute (413 request_too_large)
max_file_bytes = 16777216    # one uploaded image (413 file_too_large)
max_files = 16               # images in one /v1/verify or /v1/attribute request (413 too_many_files)
max_job_bytes = 536870912    # body of /v1/jobs
max_job_files = 1000         # images in one job
max_pixels = 16777216        # decoded pixel count of one image (422 too_many_pixels)
request_timeout_s = 120      # whole request, upload included (504 timeout)
max_concurrent = 1           # inversions / embeddings running at once
max_queue = 8                # requests waiting for them; beyond it 503 busy with Retry-After
max_pending_jobs = 16        # unfinished jobs; beyond it 503 job_queue_full
job_chunk = 16               # images of a job processed per turn (synchronous requests go in between)
rate_per_minute = 120        # per API key (or client address without keys); 429 rate_limited
rate_burst = 30

[auth]                       # no keys at all: the service is open (bind it to 127.0.0.1)
# sha256 of the key text (here of "example-key"): printf %s "$KEY" | sha256sum
keys = [{ name = "analyst", sha256 = "c018c41c1afaf2c0b66c64f97d0ee135657b699ad260f299234cd40a5d625e0e" }]
env = "IMGORIGIN_API_KEYS"   # also keys from this environment variable: NAME=KEY,NAME2=KEY2 (must be set)

[[models]]
id = "dcgan"
model = "zoo:dcgan"          # any MODEL form; zoo models use their shipped calibration

[[models]]
id = "mygan"
model = "models/g.pt"
calibration = "models/g.cal.json"

[[classifiers]]
id = "fmnist"
path = "clf"                 # folder written by imgorigin fit
two_stage = true             # allow confirm=true (verifies the classes bound in clf/bindings.json)
"""


class ConfigError(ImgoriginError, ValueError):
    """A serve config that cannot be used: the message names the file and the setting."""


@dataclass(frozen=True)
class Limits:
    """Caps that keep the service up under bad input and load (see :data:`EXAMPLE` for what each refuses)."""

    max_request_bytes: int = 32 * MiB
    max_file_bytes: int = 16 * MiB
    max_files: int = 16
    max_job_bytes: int = 512 * MiB
    max_job_files: int = 1000
    max_pixels: int = min(DEFAULT_MAX_PIXELS, 16 * MiB)
    request_timeout_s: float = 120.0
    max_concurrent: int = 1
    max_queue: int = 8
    max_pending_jobs: int = 16
    job_chunk: int = 16
    rate_per_minute: float = 120.0
    rate_burst: int = 30


@dataclass(frozen=True)
class ModelEntry:
    """A served generator: its id, its MODEL spec and its calibration file (resolved: never None once loaded)."""

    id: str
    model: str
    calibration: str


@dataclass(frozen=True)
class ClassifierEntry:
    """A served open-set classifier folder; ``two_stage`` allows ``confirm`` with the models bound in it."""

    id: str
    path: str
    two_stage: bool = False


@dataclass(frozen=True)
class ApiKey:
    """A named API key, held only as the sha256 of its text."""

    name: str
    sha256: str


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``create_app`` needs; ``skipped`` lists (id, reason) of models left out on purpose."""

    models: tuple[ModelEntry, ...] = ()
    classifiers: tuple[ClassifierEntry, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    keys: tuple[ApiKey, ...] = ()
    limits: Limits = field(default_factory=Limits)
    alpha: float = 0.05
    #: Level of the verifier's fine-detail check (None: off); see imgorigin.verification.detail.
    detail_alpha: float | None = DEFAULT_DETAIL_ALPHA
    device: str = "auto"
    work_dir: Path = field(default_factory=lambda: default_cache_dir() / "serve")
    cache_dir: Path | None = field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        if not self.models and not self.classifiers:
            raise ConfigError("the config serves no model and no classifier")
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be strictly between 0 and 1, got {self.alpha}")
        if self.detail_alpha is not None and not 0 < self.detail_alpha < 1:
            raise ConfigError(
                f"detail_alpha must be strictly between 0 and 1 (0 in the file: off), got {self.detail_alpha}"
            )
        for kind, entries in (("model", self.models), ("classifier", self.classifiers)):
            ids = [entry.id for entry in entries]
            for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
                raise ConfigError(f"{kind} id {duplicate!r} is configured twice")


def hash_key(key: str) -> str:
    """The hex sha256 of an API key's text: what a config stores and what a request's key is compared by."""
    return hashlib.sha256(key.encode()).hexdigest()


def keys_from_env(variable: str, *, required: bool) -> tuple[ApiKey, ...]:
    """API keys from an environment variable: comma-separated ``NAME=KEY`` (or a bare ``KEY``, named ``env-N``)."""
    text = os.environ.get(variable, "").strip()
    if not text:
        if required:
            raise ConfigError(f"API keys are to come from ${variable}, which is not set: refusing to start open")
        return ()
    keys = []
    for i, item in enumerate(part.strip() for part in text.split(",")):
        name, sep, key = item.partition("=")
        name, key = (name, key) if sep else (f"env-{i + 1}", item)
        if not key:
            raise ConfigError(f"${variable}: entry {i + 1} has an empty key")
        keys.append(ApiKey(name, hash_key(key)))
    return tuple(keys)


def default_config() -> ServeConfig:
    """The shipped zoo models as ``zoo:NAME`` with their shipped calibrations; keys from ``$IMGORIGIN_API_KEYS``."""
    from imgorigin import zoo

    models, skipped = [], []
    for name in zoo.list_models():
        spec = f"zoo:{name}"
        try:
            models.append(ModelEntry(spec, spec, str(default_calibration(spec))))
        except CalibrationError as err:
            skipped.append((spec, str(err)))
    return ServeConfig(models=tuple(models), skipped=tuple(skipped), keys=keys_from_env(KEYS_ENV, required=False))


def load_config(path: str | os.PathLike[str]) -> ServeConfig:
    """Read and check a serve config file (see :data:`EXAMPLE`)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    try:
        return _parse(data, path.resolve().parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _parse(data: dict[str, Any], base: Path) -> ServeConfig:
    """The config from parsed TOML, paths resolved against ``base``; settings left out keep their defaults."""
    top = _table(
        data,
        "",
        {"alpha", "detail_alpha", "device", "work_dir", "cache_dir", "limits", "auth", "models", "classifiers"},
    )
    auth = _table(top.get("auth", {}), "auth", {"keys", "env"})
    keys = tuple(_key(entry, i) for i, entry in enumerate(_list(auth, "keys", "auth")))
    if "env" in auth:
        keys += keys_from_env(_typed(auth["env"], str, "auth.env"), required=True)
    settings: dict[str, Any] = {}
    if "alpha" in top:
        settings["alpha"] = float(_typed(top["alpha"], (int, float), "alpha"))
    if "detail_alpha" in top:  # 0 turns the check off
        settings["detail_alpha"] = float(_typed(top["detail_alpha"], (int, float), "detail_alpha")) or None
    if "device" in top:
        settings["device"] = _typed(top["device"], str, "device")
    if "work_dir" in top:
        settings["work_dir"] = _path(top["work_dir"], base, "work_dir")
    if "cache_dir" in top:  # "" keeps scores and features in memory only
        settings["cache_dir"] = _path(top["cache_dir"], base, "cache_dir") if top["cache_dir"] != "" else None
    return ServeConfig(
        models=tuple(_model(entry, i, base) for i, entry in enumerate(_list(top, "models", ""))),
        classifiers=tuple(_classifier(entry, i, base) for i, entry in enumerate(_list(top, "classifiers", ""))),
        keys=keys,
        limits=_limits(top.get("limits", {})),
        **settings,
    )


def _table(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    """A TOML table with only the allowed keys."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where or 'the top level'} must be a table")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)} in {where or 'the top level'}")
    return value


def _list(table: dict[str, Any], key: str, where: str) -> list[Any]:
    """An array of tables (``[[models]]``), empty when absent."""
    value = table.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{f'{where}.' if where else ''}{key} must be an array of tables")
    return value


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """A value of the given type (bool is not a number here)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where} has the wrong type ({type(value).__name__})")
    return value


def _id(value: Any, where: str) -> str:
    """An id a request can name: letters, digits and ``._:-``, at most 64 characters."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ConfigError(f"{where}.id must be 1-64 letters, digits or ._:- (got {value!r})")
    return value


def _path(value: Any, base: Path, where: str) -> Path:
    """A path setting, relative ones against the config's folder."""
    return (base / Path(_typed(value, str, where)).expanduser()).resolve()


def _spec(value: str, base: Path) -> str:
    """A MODEL spec: an existing path relative to the config's folder is made absolute; others stay as given."""
    candidate = base / Path(value).expanduser()
    return str(candidate.resolve()) if candidate.exists() else value


def _model(entry: Any, i: int, base: Path) -> ModelEntry:
    where = f"models[{i}]"
    entry = _table(entry, where, {"id", "model", "calibration"})
    model = _spec(_typed(entry.get("model"), str, f"{where}.model"), base)
    if "calibration" in entry:
        calibration = str(_path(entry["calibration"], base, f"{where}.calibration"))
    else:
        try:
            calibration = str(default_calibration(model))
        except CalibrationError as err:
            raise ConfigError(f"{where}: {err}") from None
    return ModelEntry(_id(entry.get("id"), where), model, calibration)


def _classifier(entry: Any, i: int, base: Path) -> ClassifierEntry:
    where = f"classifiers[{i}]"
    entry = _table(entry, where, {"id", "path", "two_stage"})
    two_stage = _typed(entry.get("two_stage", False), bool, f"{where}.two_stage")
    return ClassifierEntry(_id(entry.get("id"), where), str(_path(entry.get("path"), base, f"{where}.path")), two_stage)


def _key(entry: Any, i: int) -> ApiKey:
    where = f"auth.keys[{i}]"
    entry = _table(entry, where, {"name", "sha256"})
    name = _typed(entry.get("name"), str, f"{where}.name")
    digest = _typed(entry.get("sha256"), str, f"{where}.sha256").lower()
    if not _SHA256.match(digest):
        raise ConfigError(f"{where}.sha256 must be 64 hex digits (the sha256 of the key, not the key)")
    return ApiKey(name, digest)


def _limits(value: Any) -> Limits:
    """The [limits] table: every value a positive number of the field's type (``max_queue`` may be 0: no waiting)."""
    table = _table(value, "limits", {f.name for f in fields(Limits)})
    settings = {}
    for f in fields(Limits):
        if f.name in table:
            number = _typed(table[f.name], int if f.type == "int" else (int, float), f"limits.{f.name}")
            lowest = 0 if f.name == "max_queue" else 1e-9
            if not (math.isfinite(number) and number >= lowest):
                raise ConfigError(f"limits.{f.name} must be {'0 or more' if lowest == 0 else 'positive'}, got {number}")
            settings[f.name] = number
    return Limits(**settings)
