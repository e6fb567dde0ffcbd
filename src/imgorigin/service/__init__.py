"""``imgorigin serve``: the library over HTTP for analysts, safe under bad input and load.

Modules, one job each: :mod:`~imgorigin.service.config` (what the server may use, from TOML),
:mod:`~imgorigin.service.engines` (models and classifiers loaded once), :mod:`~imgorigin.service.uploads`
(streamed, capped multipart uploads), :mod:`~imgorigin.service.checks` (bad images refused with a code),
:mod:`~imgorigin.service.auth` and :mod:`~imgorigin.service.limits` (keys, rate limit, work queue),
:mod:`~imgorigin.service.jobs` (batches persisted in SQLite, resumed after a crash),
:mod:`~imgorigin.service.public` (no server path in any answer), :mod:`~imgorigin.service.logs` (JSON lines),
:mod:`~imgorigin.service.state` (one running service) and :mod:`~imgorigin.service.app` (the routes and the page).
Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart).
"""

from imgorigin.service.app import create_app
from imgorigin.service.config import ServeConfig, default_config, hash_key, load_config

__all__ = ["ServeConfig", "create_app", "default_config", "hash_key", "load_config"]
