"""One running service: its limits and pools, the engines loaded in the background at start-up, the job store.

Until the engines are loaded every request but the health probes is refused with 503 ``not_ready`` (or
``load_failed``, with the reason). The work folder holds the job database, the uploads in flight and the
job folders; a lock file keeps a second server from using the same work folder.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from imgorigin.service.auth import Authenticator
from imgorigin.service.checks import check_uploads
from imgorigin.service.config import ConfigError, ServeConfig
from imgorigin.service.engines import ClassifierEngine, Engines, ModelEngine, public_names
from imgorigin.service.errors import ServiceError
from imgorigin.service.jobs import JobRunner, JobStore
from imgorigin.service.limits import RateLimiter, WorkQueue
from imgorigin.service.public import Redactor
from imgorigin.service.uploads import Upload

logger = logging.getLogger("imgorigin.service")
#: Threads that decode uploads to check them (cheap next to inversion, so not behind the work queue).
CHECK_THREADS = 2


class Service:
    """The resources behind the app; ``start`` begins loading, ``ready`` gives the engines or refuses."""

    def __init__(self, config: ServeConfig) -> None:
        limits = config.limits
        self.config, self.limits = config, limits
        self.auth = Authenticator(config.keys)
        self.rate = RateLimiter(limits.rate_per_minute, limits.rate_burst)
        self.work = WorkQueue(limits.max_concurrent, limits.max_queue)
        self.uploads_dir = config.work_dir / "uploads"
        self.jobs_dir = config.work_dir / "jobs"
        self.redactor = Redactor(public_names(config))
        self.engines: Engines | None = None
        self.store: JobStore | None = None
        self.runner: JobRunner | None = None
        self.load_error: str | None = None
        self._checks = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="imgorigin-check")
        self._receiving = 0
        self._lock_file: int | None = None
        self._loader = threading.Thread(target=self._load, name="imgorigin-load", daemon=True)

    def start(self) -> None:
        """Take the work folder, clear uploads a crash left behind, and load the engines in the background."""
        self.config.work_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = os.open(self.config.work_dir / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another imgorigin server is using the work folder {self.config.work_dir}") from None
        shutil.rmtree(self.uploads_dir, ignore_errors=True)
        self.uploads_dir.mkdir()
        self.jobs_dir.mkdir(exist_ok=True)
        self._loader.start()

    def _load(self) -> None:
        try:
            engines = Engines.load(self.config)
            self.redactor = Redactor(engines.replacements)
            self.store = JobStore(self.config.work_dir / "jobs.sqlite")
            self.runner = JobRunner(self.store, engines, self.work, self.jobs_dir, self.limits.job_chunk, self.redactor)
            self.runner.start()
            self.engines = engines
            logger.info(
                "ready",
                extra={"event": "ready", "models": list(engines.models), "classifiers": list(engines.classifiers)},
            )
        except Exception as err:
            self.load_error = self.redactor.text(str(err))
            logger.exception("loading failed", extra={"event": "load_failed"})

    def stop(self) -> None:
        """Stop the job runner after its record in progress and release the work folder."""
        if self.runner is not None:
            self.runner.stop()
        self.work.close()
        self._checks.shutdown(wait=False, cancel_futures=True)
        if self.store is not None:
            self.store.close()
        if self._lock_file is not None:
            os.close(self._lock_file)

    def wait_ready(self, timeout: float) -> bool:
        """Block until loading has finished (either way); whether the service is ready."""
        self._loader.join(timeout)
        return self.engines is not None

    def ready(self) -> Engines:
        """The loaded engines, or 503 while loading (``not_ready``) or after loading failed (``load_failed``)."""
        if self.engines is not None:
            return self.engines
        if self.load_error is not None:
            raise ServiceError(503, "load_failed", f"the server could not load its models: {self.load_error}")
        raise ServiceError(503, "not_ready", "the server is still loading its models", headers={"Retry-After": "5"})

    @contextmanager
    def receiving(self) -> Iterator[None]:
        """Bound the uploads in flight (each can hold up to a request's worth of disk) by the work queue's size."""
        if self._receiving >= 2 * self.work.capacity:
            raise ServiceError(503, "busy", "too many uploads in progress; retry shortly", headers={"Retry-After": "2"})
        self._receiving += 1
        try:
            yield
        finally:
            self._receiving -= 1

    async def check(self, uploads: Sequence[Upload], engine: ModelEngine | ClassifierEngine) -> None:
        """Decode every upload as the engine will, in the check threads; the first bad one refuses the request."""
        await asyncio.get_running_loop().run_in_executor(
            self._checks, check_uploads, uploads, engine.channels, engine.size, self.limits.max_pixels
        )
