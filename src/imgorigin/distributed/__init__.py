"""Batch runs past one process: the same records as the local engine (:mod:`imgorigin.batch`), computed elsewhere.

:mod:`imgorigin.distributed.ray_engine` runs the scoring on a Ray Data pipeline (``pip install 'imgorigin[ray]'``);
the driver still writes, resumes and counts through :func:`imgorigin.batch.run_batch`, so a Ray run's output is
the local engine's file, record for record. Ray is imported only when that engine is used.
"""

from imgorigin.distributed.engine import Engine, EngineConfig, Job, expand_manifests, read_manifest

__all__ = ["Engine", "EngineConfig", "Job", "expand_manifests", "read_manifest"]
