"""Where imgorigin runs and what it keys results by: device, cache folder and content hashes (one home each)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from imgorigin.errors import UsageError

CACHE_ENV = "IMGORIGIN_CACHE"


def default_cache_dir() -> Path:
    """``$IMGORIGIN_CACHE`` when set and not empty, else ``~/.cache/imgorigin``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "imgorigin")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None): CUDA when present, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` are checked here, so
    an unknown or absent device is a clear error now instead of a traceback deep inside a model."""
    name = "auto" if device is None else str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise UsageError(f"--device {name!r}: imgorigin runs on cpu or cuda only")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name!r}: CUDA is not available in this PyTorch build or on this machine")
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes: the content key of an image file everywhere (records, score and feature caches)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(*modules: torch.nn.Module) -> str:
    """Hex sha256 over the modules' state dicts (names and raw bytes, sorted by name): names exact weights."""
    digest = hashlib.sha256()
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
