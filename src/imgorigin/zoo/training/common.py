"""What every zoo recipe's training shares: seeding, minibatches, EMA, schedules, timing, records, saving."""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

Log = Callable[[str], None]


def default_log(msg: str) -> None:
    """Print a training progress line at once (training runs for minutes)."""
    print(msg, flush=True)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global generators (CPU and CUDA) and return a CPU generator for data order and noise."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def minibatches(
    images: torch.Tensor, batch_size: int, rng: torch.Generator, device: torch.device
) -> Iterator[torch.Tensor]:
    """Endless stream of shuffled minibatches (full batches only; reshuffled every epoch with ``rng``)."""
    n = images.shape[0]
    if n < batch_size:  # tiny smoke-test datasets: sample with replacement
        while True:
            yield images[torch.randint(0, n, (batch_size,), generator=rng)].to(device)
    while True:
        perm = torch.randperm(n, generator=rng)
        for i in range(0, n - batch_size + 1, batch_size):
            yield images[perm[i : i + batch_size]].to(device, non_blocking=True)


def warmup_cosine(step: int, total: int, warmup: int, final_frac: float = 0.05) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine decay to ``final_frac``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * progress))


class EMA:
    """Exponential moving average of a module's parameters (buffers copied), with the usual warm-up."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.steps = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """Move the average one step towards ``module``'s current parameters."""
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for pe, p in zip(self.module.parameters(), module.parameters(), strict=True):
            pe.lerp_(p.detach(), 1 - d)
        for be, b in zip(self.module.buffers(), module.buffers(), strict=True):
            be.copy_(b)


def count_parameters(*modules: torch.nn.Module) -> int:
    """Number of parameters of the modules together (recorded in the training stats and the card)."""
    return sum(p.numel() for m in modules for p in m.parameters())


def config_dict(config: Any) -> dict[str, Any]:
    """A recipe config as a JSON-ready dict (tuples become lists)."""
    d = asdict(config) if is_dataclass(config) else dict(config)
    return json.loads(json.dumps(d))


def environment() -> dict[str, Any]:
    """Where training ran: device, torch version, CPU count, threads (recorded in the model card)."""
    import diffusers

    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


class Timer:
    """Wall-clock seconds since construction."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, creating the parent folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    return path


def load_training_images(images: torch.Tensor | None, config: Any = None) -> torch.Tensor:
    """The training images in [0, 1]: ``images`` if given; else ``config.training_crops`` random crops
    (``config.image_size``, seeded by ``config.seed``) of the training photos when the recipe sets it; else the
    full Fashion-MNIST train split ``[60000, 1, 28, 28]``."""
    if images is not None:
        return images.float()
    crops = int(getattr(config, "training_crops", 0) or 0)
    if crops:
        from imgorigin.zoo.photos import random_crops

        return random_crops("train", crops, config.image_size, config.seed)
    from imgorigin.zoo.data import train_images

    return train_images()


def save_diffusers(model: torch.nn.Module, folder: Path) -> None:
    """``save_pretrained`` (safetensors) without the ``_name_or_path`` diffusers records for a model it loaded from
    a folder: that is the training machine's path, not part of the shipped model."""
    model.save_pretrained(folder, safe_serialization=True)
    config = folder / "config.json"
    data = json.loads(config.read_text())
    if data.pop("_name_or_path", None) is not None:
        config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def save_weights(module: torch.nn.Module, path: str | os.PathLike, half: bool = False) -> None:
    """Write a module's state dict as safetensors (contiguous CPU tensors; ``half``: floating-point ones as float16,
    half the bytes, loaded back into float32 modules)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
