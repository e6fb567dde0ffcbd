"""The Ray Data engine: image files scored in an actor pool, records streamed back to the driver that writes them.

Pipeline (streaming execution, so memory does not grow with the number of images beyond the driver's list of
paths and the results file's resume set, a few hundred bytes per image):

1. the driver's list of files still to answer (``run_batch`` has already removed those the output answers, by
   path under the run identity) becomes a dataset of paths (bytes, so non-UTF-8 names survive Arrow);
2. ``map_batches`` with :class:`Scorer`, a callable class run as a pool of ``actors`` actors (``num_cpus`` and
   ``num_gpus`` each): every actor builds the scorer once from the :class:`~imgorigin.distributed.engine.Job`
   (the model or backbone loaded once per actor), checks that its run identity is the driver's, then decodes
   and scores each batch of ``ray_batch_size`` files through the library's own path function
   (``Verifier.verify_paths``, ``Attributor.attribute_paths``, ``TwoStageAttributor.attribute_paths``), so a
   record is the local engine's record by construction; a file that cannot be read is its error record, and a
   batch that raises is retried file by file so that one bad file never fails the job;
3. the driver iterates the output (``iter_batches``) and yields each record to ``run_batch``, whose
   ``RecordWriter`` appends and flushes it at once: after a SIGKILL of the driver every record already written
   is kept, and a rerun scores only the rest. Records in flight are lost and computed again, never duplicated
   (the writer keeps one line per path).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imgorigin.distributed.engine import EngineConfig, Job, Records
from imgorigin.errors import ImgoriginError, UsageError
from imgorigin.records import dumps

logger = logging.getLogger("imgorigin")

#: Most input blocks (a block per actor batch up to this many: every actor gets work, the object store few objects).
MAX_BLOCKS = 10_000


class ClusterError(ImgoriginError):
    """The Ray cluster could not be joined or could not run the job (a worker failed to build the scorer, ...)."""


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UsageError("--engine ray needs Ray Data: pip install 'imgorigin[ray]'") from None
    return ray


def _normalised(identity: dict) -> dict:
    """An identity as it reads back from a results file (tuples become lists, NaN null)."""
    return json.loads(dumps(identity))


def _error(path: str, err: BaseException) -> dict:
    """The error record of a file whose scoring raised (the message names the file, as the loader's do)."""
    message = str(err) if isinstance(err, ImgoriginError) else f"{type(err).__name__}: {err}"
    return {"path": path, "error": message if message.startswith(path) else f"{path}: {message}"}


class Scorer:
    """The actor: builds the job's scorer once, then turns batches of paths into batches of JSON records."""

    def __init__(self, job: Job, num_cpus: float, cwd: str) -> None:
        import torch

        if os.path.isdir(cwd):  # relative paths (inputs, model files) mean what they mean on the driver
            os.chdir(cwd)
        if num_cpus >= 1:
            torch.set_num_threads(int(num_cpus))
        self.source = job.build()
        found = _normalised(self.source.identity())
        if found != _normalised(job.identity):
            from imgorigin.records import differing_keys

            keys = ", ".join(differing_keys(found, _normalised(job.identity)))
            raise ClusterError(
                f"worker on {os.uname().nodename}: its scorer differs from the driver's in {keys} (other model "
                "weights, calibration or imgorigin version on this machine?)"
            )
        self.records = getattr(self.source, job.method)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        paths = [os.fsdecode(bytes(path)) for path in batch["path"]]
        return {"record": [dumps(record) for record in self.score(paths)]}

    def score(self, paths: list[str]) -> list[dict]:
        """One record per path (in any order): the batch at once, or file by file when the batch raises."""
        try:
            return list(self.records(paths))
        except Exception:  # noqa: BLE001 - a batch must not fail the job: find the file at fault
            logger.debug("batch of %d failed; scoring file by file", len(paths), exc_info=True)
        records = []
        for path in paths:
            try:
                records.extend(self.records([path]))
            except Exception as err:  # noqa: BLE001 - any failure on one input is that input's error record
                records.append(_error(path, err))
        return records


def _bound(job: Job, num_cpus: float, cwd: str) -> type[Scorer]:
    """:class:`Scorer` with its arguments bound in the class (shipped with it, not through the object store)."""

    class BoundScorer(Scorer):
        def __init__(self) -> None:
            super().__init__(job, num_cpus, cwd)

    return BoundScorer


def _init(ray: Any, config: EngineConfig) -> bool:
    """Join the cluster (``--address``) or start a local one; True when this call started Ray."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
    try:
        if config.address:
            ray.init(address=config.address, **options)
        else:
            ray.init(include_dashboard=False, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ClusterError(f"--address {config.address or '(local)'}: cannot start or join Ray: {err}") from None
    return True


def _dataset(ray: Any, files: list[Path], config: EngineConfig) -> Any:
    """The input dataset: one row per file, its path as bytes, in blocks of a few actor batches."""
    items = [{"path": os.fsencode(path)} for path in files]
    blocks = min(max(-(-len(items) // config.ray_batch_size), 1), MAX_BLOCKS)  # about one actor batch per block
    try:
        return ray.data.from_items(items, override_num_blocks=blocks)
    except TypeError:  # Ray before 2.10 spells it parallelism
        return ray.data.from_items(items, parallelism=blocks)


def ray_records(job: Job, config: EngineConfig, *, progress: bool = False) -> Records:
    """The records function that scores files on Ray (see the module docstring)."""
    ray = _import_ray()

    def records(files: list[Path]) -> Iterator[dict]:
        if not files:
            return
        started = _init(ray, config)
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = progress
            if not progress:  # the progress lines Ray Data logs instead of bars
                logging.getLogger("ray.data").setLevel(logging.ERROR)
            scored = _dataset(ray, files, config).map_batches(
                _bound(job, config.num_cpus, os.getcwd()),
                batch_size=config.ray_batch_size,
                compute=ray.data.ActorPoolStrategy(size=config.actors),
                num_cpus=config.num_cpus,
                num_gpus=config.num_gpus,
                batch_format="numpy",
            )
            try:
                for batch in scored.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
                    for line in batch["record"]:
                        yield json.loads(line)
            except ray.exceptions.RayError as err:
                raise ClusterError(f"the Ray job failed: {_cause(err)}") from None
        finally:
            if started:
                ray.shutdown()

    return records


def _cause(err: BaseException) -> str:
    """The innermost message of a Ray error (an actor's ClusterError, say), without the remote traceback."""
    seen = err
    while getattr(seen, "cause", None) is not None and seen.cause is not seen:
        seen = seen.cause
    text = str(seen).strip().splitlines()
    return text[-1] if text else type(seen).__name__
