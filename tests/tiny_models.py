"""Tiny generators built in the tests (random weights, seeded): nothing is downloaded."""

from __future__ import annotations

import torch
from torch import nn

LATENT = 8
SIZE = 16


class TinyGenerator(nn.Module):
    """z [B, 8] → [B, 1, 16, 16] in [-1, 1]: a small MLP+conv decoder, scriptable for the TorchScript path."""

    def __init__(self, seed: int = 0, channels: int = 1) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.latent_shape = [LATENT]  # read by the TorchScript loader
        self.fc = nn.Linear(LATENT, 16 * 8 * 8)
        self.up = nn.ConvTranspose2d(16, channels, 4, 2, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc(z)).view(-1, 16, 8, 8)
        return torch.tanh(self.up(h) * 2)


def real_like(n: int, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    """Smooth random images (blurred noise) in [0, 1], 8-bit quantised: stand-ins for real photos."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size // 4, size // 4, generator=g)
    x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x * 255).round() / 255


def save_torchscript(module: nn.Module, path) -> None:
    """Script and save a generator as the CLI expects it."""
    torch.jit.save(torch.jit.script(module.eval()), str(path))


def factory() -> TinyGenerator:
    """A ``module:function`` factory, as users pass ``mypkg.models:make_generator`` on the command line."""
    return TinyGenerator(seed=0)
