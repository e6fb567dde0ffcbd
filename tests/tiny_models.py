"""Tiny generators built in the tests (random weights, seeded): nothing is downloaded."""

from __future__ import annotations

import diffusers
import torch
from torch import nn

from imgorigin.verification.generators.autoencoder import AutoencoderGenerator, LatentDiffusion

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


def tiny_vae(cls=diffusers.AutoencoderKL):
    """A random diffusers autoencoder (``AutoencoderKL`` or ``VQModel``), 16×16×1 → 2×8×8, seeded."""
    common = dict(
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=2,
        sample_size=16,
        norm_num_groups=4,
    )
    if cls is diffusers.VQModel:
        common.update(num_vq_embeddings=16, vq_embed_dim=2)
    torch.manual_seed(0)
    return cls(**common)


def tiny_unet(channels: int = 1, seed: int = 0):
    """A random diffusers ``UNet2DModel`` on 8×8 inputs of ``channels`` channels, seeded."""
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
    )


def tiny_latent_model(unet_seed: int = 0, steps: int = 4) -> AutoencoderGenerator:
    """:func:`tiny_vae` with a random latent :func:`tiny_unet` (``unet_seed``) and a DDIM scheduler of 100 steps."""
    unet = tiny_unet(channels=2, seed=unet_seed)
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=100, clip_sample=False, timestep_spacing="trailing")
    return AutoencoderGenerator(tiny_vae(), id="tiny-ldm", latent_sampler=LatentDiffusion(unet, scheduler, steps))
