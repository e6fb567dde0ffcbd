"""Batch jobs that outlive a request and a crash: a SQLite store (WAL) and one background runner.

A job's uploaded files wait in ``jobs/<id>/`` until the job completes, then the folder is deleted. Each image is a
row that gets its record in its own committed transaction as soon as the library yields it, so a server killed
with SIGKILL loses no finished record; when it starts again the runner takes up every unfinished job where it
stopped, and each image ends with exactly one record.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from imgorigin.errors import ImgoriginError
from imgorigin.records import dumps
from imgorigin.service.engines import Engines, Options
from imgorigin.service.errors import ServiceError
from imgorigin.service.limits import WorkQueue
from imgorigin.service.public import Redactor
from imgorigin.service.uploads import stored_name

logger = logging.getLogger("imgorigin.service")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    alpha REAL NOT NULL,
    confirm INTEGER NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    job TEXT NOT NULL REFERENCES jobs(id),
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    record TEXT,
    PRIMARY KEY (job, idx)
);
"""
UNFINISHED = ("queued", "running")
VERIFY, ATTRIBUTE = "verify", "attribute"


@dataclass(frozen=True)
class Job:
    """A job's row, with how many of its images have a record."""

    id: str
    owner: str | None
    kind: str
    target: str
    alpha: float
    confirm: bool
    status: str
    total: int
    done: int
    error: str | None
    created: float
    updated: float

    def summary(self) -> dict:
        """The job's state as GET /v1/jobs/{id} reports it (without the records)."""
        return {
            "id": self.id,
            "status": self.status,
            "kind": self.kind,
            "target": self.target,
            "alpha": self.alpha,
            "confirm": self.confirm,
            "total": self.total,
            "done": self.done,
            "error": self.error,
            "created": self.created,
            "updated": self.updated,
        }


class JobStore:
    """Jobs and per-image records in one SQLite file (WAL, synchronous=FULL), shared by the app and the runner."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def create(
        self, id: str, owner: str | None, kind: str, target: str, options: Options, names: Sequence[str]
    ) -> None:
        """Add a queued job and its images in one transaction."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, NULL, ?, ?)",
                (id, owner, kind, target, options.alpha, int(options.confirm), len(names), now, now),
            )
            self._db.executemany("INSERT INTO images VALUES (?, ?, ?, NULL)", [(id, i, n) for i, n in enumerate(names)])

    def get(self, id: str) -> Job | None:
        """A job by id, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT j.*, (SELECT COUNT(*) FROM images i WHERE i.job = j.id AND i.record IS NOT NULL) "
                "FROM jobs j WHERE j.id = ?",
                (id,),
            ).fetchone()
        if row is None:
            return None
        (id_, owner, kind, target, alpha, confirm, status, total, error, created, updated, done) = row
        return Job(id_, owner, kind, target, alpha, bool(confirm), status, total, done, error, created, updated)

    def records(self, id: str, offset: int, limit: int) -> list[str]:
        """The JSON text of a job's finished records, in upload order, from the offset-th image."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM images WHERE job = ? AND record IS NOT NULL ORDER BY idx LIMIT ? OFFSET ?",
                (id, limit, offset),
            ).fetchall()
        return [row[0] for row in rows]

    def count_unfinished(self) -> int:
        """How many jobs are queued or running."""
        return len(self.unfinished())

    def unfinished(self) -> list[str]:
        """Ids of queued and running jobs, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM jobs WHERE status IN (?, ?) ORDER BY created, id", UNFINISHED
            ).fetchall()
        return [row[0] for row in rows]

    def pending(self, id: str, limit: int) -> list[tuple[int, str]]:
        """(index, public name) of up to ``limit`` images of a job that have no record yet."""
        with self._lock:
            return self._db.execute(
                "SELECT idx, name FROM images WHERE job = ? AND record IS NULL ORDER BY idx LIMIT ?", (id, limit)
            ).fetchall()

    def save_record(self, id: str, index: int, record: str) -> None:
        """Commit an image's record (its only one: an image that has a record keeps it)."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE images SET record = ? WHERE job = ? AND idx = ? AND record IS NULL", (record, id, index)
            )

    def set_status(self, id: str, status: str, error: str | None = None) -> None:
        """Move a job to queued, running, done or failed."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, updated = ? WHERE id = ?", (status, error, time.time(), id)
            )


class JobRunner:
    """One background thread that works through unfinished jobs, oldest first, a chunk of images per turn."""

    def __init__(
        self, store: JobStore, engines: Engines, queue: WorkQueue, folder: Path, chunk: int, redactor: Redactor
    ) -> None:
        self.store, self.engines, self.queue, self.folder, self.chunk = store, engines, queue, folder, chunk
        self.redactor = redactor
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="imgorigin-jobs", daemon=True)

    def start(self) -> None:
        """Remove folders no unfinished job owns (left by a crash), then start the thread."""
        keep = set(self.store.unfinished())
        if self.folder.is_dir():
            for entry in self.folder.iterdir():
                if entry.name not in keep:
                    shutil.rmtree(entry, ignore_errors=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for work now (a job was added)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the record in progress; unfinished jobs stay unfinished and resume at the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            jobs = self.store.unfinished()
            if not jobs:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self._run(jobs[0])

    def _run(self, id: str) -> None:
        """Work on a job until it is done, fails, or the runner stops."""
        job = self.store.get(id)
        folder = self.folder / id
        try:
            engine = self.engines.model(job.target) if job.kind == VERIFY else self.engines.classifier(job.target)
            self.store.set_status(id, "running")
            logger.info("job started", extra={"event": "job_started", "job": id, "total": job.total, "done": job.done})
            options = Options(job.alpha, job.confirm)
            while not self._stop.is_set() and (pending := self.store.pending(id, self.chunk)):
                self._chunk(id, folder, engine, options, pending)
        except (ImgoriginError, ServiceError) as err:
            message = self.redactor.text(err.message if isinstance(err, ServiceError) else str(err))
            self._finish(id, folder, "failed", message)
            return
        except Exception:
            logger.exception("job failed", extra={"event": "job_failed", "job": id})
            self._finish(id, folder, "failed", "internal error while processing the job")
            return
        if not self._stop.is_set():
            self._finish(id, folder, "done", None)

    def _chunk(self, id: str, folder: Path, engine, options: Options, pending: list[tuple[int, str]]) -> None:
        """Records for some images of a job, each committed as it comes; an image left without one gets an error."""
        by_path = {str(folder / stored_name(index)): (index, name) for index, name in pending}
        redact = self.redactor.with_names({path: name for path, (_, name) in by_path.items()})
        answered: set[str] = set()
        present = [path for path in by_path if Path(path).is_file()]
        with self.queue.slot(), engine.lock:
            for record in engine.records(present, options) if present else ():
                if record.get("path") in by_path and record["path"] not in answered:
                    answered.add(record["path"])
                    self.store.save_record(id, by_path[record["path"]][0], dumps(redact(record)))
                if self._stop.is_set():
                    return
        for path, (index, name) in by_path.items():
            if path not in answered:
                message = "the uploaded file was lost" if path not in present else "the model gave no record for it"
                self.store.save_record(id, index, dumps({"path": name, "error": f"{name}: {message}"}))

    def _finish(self, id: str, folder: Path, status: str, error: str | None) -> None:
        self.store.set_status(id, status, error)
        shutil.rmtree(folder, ignore_errors=True)
        logger.info("job finished", extra={"event": "job_finished", "job": id, "status": status})
