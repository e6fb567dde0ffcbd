"""A learned initialiser: a small CNN, trained on a model's own samples, that predicts the latent of an image.

Inverting a GAN from random starts leaves a share of its own images in wrong basins: on the 64×64 RGB DCGAN of
the zoo 30 % after one attempt, and retries (3–6 s each) only bring that to 7 %. Levenberg–Marquardt finds the
member's basin from close enough (true latent + 0.3σ noise: 5 % fail; + 1σ: 50 %), so what is missing is a
start near the member's latent. Sampling the model gives unlimited (image, latent) pairs, so the calibration
trains a regression from images to latents on them (amortised inversion, as the encoders of hybrid GAN
inversion) and the inversion starts each image at the prediction: measured on 60 fresh members of that DCGAN, a
network trained for 3 min ends 0.56σ from the true latent (RMS per value), and the refinement from there brought
60 of 60 to the 8-bit floor in one attempt.

The initialiser only chooses where the search starts; the score is still the reconstruction distance, so a
non-member gains nothing from it. It belongs to its calibration (weights stored in the calibration file, their
sha256 in its digest and in the score cache's key), so verification starts from exactly the same latents.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from imgorigin.images import quantize_8bit
from imgorigin.verification.generators.base import Generator

#: Inversion settings that come with a learned start when the calibration chooses it (``init="auto"``): one
#: start, refined at once, re-measuring the Jacobian less often. Measured on 60 members of the zoo dcgan-rgb:
#: Adam's 25 steps first took 3 of them out of the basin the prediction had found (95 % at the floor), refining the
#: prediction itself brought 100 %, with 8 Broyden updates between measurements as with 3, ~1.8× faster. Held-out
#: photo crops then ran 31 iterations (median), many of them rejected steps that re-measure the Jacobian; counting
#: every iteration towards the patience and a 30 % tolerance end them after ~14 (replayed on the logged loss
#: curves of 30 members and 30 crops: every member still stops at the floor).
LEARNED_START: dict = {
    "restarts": 1,
    "refine_after": 1,
    "refine_broyden": 8,
    "refine_rel_tol": 0.3,
    "refine_count_all": True,
}
#: The learned initialiser's own images are pooled down to at most this size first (its cost stays small).
MAX_INPUT = 32
#: The tensor in an initialiser's file that holds its shape: channels, height, width, latent size, width.
SHAPE_KEY = "shape"


@dataclass(frozen=True)
class InitializerConfig:
    """How the learned initialiser is trained: a pool of the model's samples, refreshed as training goes."""

    pool: int = 8192  # (image, latent) pairs generated before training
    refresh: int = 16  # pool pairs replaced by fresh samples at every step (no pair is seen too often)
    steps: int = 2000
    batch_size: int = 128
    lr: float = 1e-3
    width: int = 32  # channels of the first convolution, doubled per stage up to 256
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.pool, self.steps, self.batch_size, self.width) < 1 or self.refresh < 0 or self.lr <= 0:
            raise ValueError("initializer pool, steps, batch_size, width must be >= 1, refresh >= 0, lr > 0")
        if self.refresh > self.pool:
            raise ValueError("initializer refresh must not exceed its pool")

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> InitializerConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown initializer settings {sorted(unknown)}")
        return cls(**data)


class LatentEncoder(nn.Module):
    """Images ``[B, C, H, W]`` in [0, 1] → flat latents ``[B, dim]``: stride-2 convolutions (batch norm, leaky
    ReLU) down to 2 × 2 or less, then a two-layer MLP."""

    def __init__(self, image_shape: tuple[int, int, int], latent_dim: int, width: int = 32) -> None:
        super().__init__()
        channels, height, width_px = image_shape
        pool = max(1, math.ceil(max(height, width_px) / MAX_INPUT))
        layers: list[nn.Module] = [nn.AvgPool2d(pool)] if pool > 1 else []
        size, c_in, c_out = max(height, width_px) // pool, channels, width
        while size > 2:
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]
            size, c_in, c_out = size // 2, c_out, min(2 * c_out, 256)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * c_in, 512), nn.LeakyReLU(0.2), nn.Linear(512, latent_dim))
        self.image_shape, self.latent_dim, self.width = tuple(image_shape), latent_dim, width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images * 2 - 1))


def train_initializer(
    generator: Generator, config: InitializerConfig | None = None, *, progress: bool = False
) -> LatentEncoder:
    """Train a :class:`LatentEncoder` on ``generator``'s own 8-bit samples (seeded: the same model and config give
    the same weights on the same machine), rounded to float16 as it is stored, in inference mode."""
    from tqdm.auto import tqdm

    cfg = config or InitializerConfig()
    dim = math.prod(generator.latent_shape)
    # its own sample stream: a calibration drawn with the same seed must not be the initialiser's training pairs
    # (they would start closer and end lower than the images verify sees, as measured: 15 % of members rejected)
    rng = torch.Generator().manual_seed(sample_seed(cfg.seed))

    @torch.no_grad()
    def pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = generator.sample_latents(n, rng)
        x = torch.cat([quantize_8bit(generator.decode(part)) for part in z.split(256)])
        return x, z.flatten(1)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = LatentEncoder(generator.image_shape, dim, cfg.width).to(generator.device)
    images, latents = pairs(cfg.pool)
    optimiser = torch.optim.Adam(net.parameters(), cfg.lr)
    net.train()
    at = 0
    for _ in tqdm(range(cfg.steps), desc=f"learning initialiser ({generator.id})", disable=not progress, leave=False):
        if cfg.refresh:
            rows = torch.arange(at, at + cfg.refresh) % cfg.pool
            images[rows], latents[rows] = pairs(cfg.refresh)
            at = (at + cfg.refresh) % cfg.pool
        batch = torch.randint(0, cfg.pool, (cfg.batch_size,), generator=rng)
        loss = (net(images[batch]) - latents[batch]).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    return from_bytes(to_bytes(net))  # exactly the weights a calibration file holds


def sample_seed(seed: int) -> int:
    """The seed of the initialiser's training samples for ``seed``: mixed by sha256 with a name of its own, so that
    no seed a user draws calibration or member samples with gives the same latents."""
    return int(hashlib.sha256(f"imgorigin.initializer:{seed}".encode()).hexdigest()[:15], 16)


def to_bytes(net: LatentEncoder) -> bytes:
    """The initialiser as safetensors bytes: float16 weights, and its shape as an int tensor ``shape`` (safetensors
    metadata is written in no fixed order, and the same weights must give the same bytes and sha256)."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    tensors[SHAPE_KEY] = torch.tensor([*net.image_shape, net.latent_dim, net.width], dtype=torch.int64)
    return save(tensors)


def from_bytes(data: bytes) -> LatentEncoder:
    """Inverse of :func:`to_bytes`, in inference mode with float32 weights."""
    from safetensors.torch import load

    tensors = load(data)
    channels, height, width_px, latent_dim, width = tensors.pop(SHAPE_KEY).tolist()
    net = LatentEncoder((channels, height, width_px), latent_dim, width)
    net.load_state_dict({k: v.float() for k, v in tensors.items()})
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def digest(data: bytes) -> str:
    """sha256 of an initialiser's bytes: names it in the calibration digest and the score cache key."""
    return hashlib.sha256(data).hexdigest()


class LearnedInit(Generator):
    """A generator with a learned initialiser as its encoder: decodes, samples and hashes exactly as ``base``
    (it is the same model), and :meth:`encode` gives the initialiser's latents. ``init_sha256`` names it;
    ``data`` and ``training`` (how it was trained) go into a calibration made on the bound generator."""

    def __init__(self, base: Generator, data: bytes, training: dict | None = None) -> None:
        super().__init__()
        self.base, self.data, self.training, self.init_sha256 = base, data, training, digest(data)
        self.encoder = from_bytes(data).to(base.device)
        self.id, self.latent_shape, self.device = base.id, base.latent_shape, base.device

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.base.decode(z)

    def modules(self) -> list[torch.nn.Module]:
        return self.base.modules()

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.base.sample_latents(n, generator)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images).view(images.shape[0], *self.latent_shape)

    @property
    def has_encoder(self) -> bool:
        return True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.base.image_shape

    def to(self, device: str | torch.device) -> Generator:
        self.base.to(device)
        self.encoder.to(device)
        self.device = self.base.device
        return self

    def weight_hash(self) -> str:
        return self.base.weight_hash()
