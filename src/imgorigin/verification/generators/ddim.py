"""Adapter for pixel diffusion models: x_T → deterministic DDIM chain (eta = 0) → image.

Inversion optimises x_T with the gradient back-propagated through all ``num_inference_steps`` UNet calls,
as the RONAN code does for DDPM (there with 50 steps); fewer steps make inversion affordable on a CPU.
The encoder is DDIM inversion (the chain run backwards from the image, ε evaluated at the current point);
``encoder_iterations`` > 0 refines each backward step by fixed-point iteration (ε evaluated at the point being
solved for), which inverts the *unclipped* chain exactly where the iteration converges.

Sampler settings change what the generator is, so they are part of its identity: :attr:`DDIMGenerator.sampler`
lists them (scheduler class, steps, timesteps, spacing, η, prediction type, x_0 clipping and the gradient
used through it, encoder), and :meth:`DDIMGenerator.weight_hash` mixes them into the hash whenever they differ
from the generator's ``canonical`` settings (by default: the scheduler as saved, 20 steps, exact gradient,
plain DDIM inversion), so a calibration made with one setting refuses another while calibrations made with
the canonical setting keep their hash.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Literal

import torch

from imgorigin.runtime import weights_sha256
from imgorigin.verification.generators.base import Generator
from imgorigin.verification.generators.torch_module import to_unit_range

ClipGradient = Literal["exact", "straight_through"]
#: Steps when nobody says otherwise (the ``--ddim-steps`` default of diffusers models).
DEFAULT_STEPS = 20


class DDIMGenerator(Generator):
    """A diffusers ``UNet2DModel`` plus a ``DDIMScheduler``, sampled deterministically in k steps.

    ``clip_sample``: clip the predicted x_0 to ±``clip_sample_range`` at every step (None: as the scheduler's
    config says). ``clip_gradient``: the gradient through that clip, ``exact`` (zero where clipped) or
    ``straight_through`` (identity; the forward pass is unchanged). ``encoder_iterations``: fixed-point
    iterations per backward step of the DDIM-inversion encoder (0: plain DDIM inversion). ``canonical``:
    the sampler dict for which :meth:`weight_hash` is the plain weight hash (None: :meth:`default_sampler`).
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        scheduler,
        num_inference_steps: int = DEFAULT_STEPS,
        *,
        id: str = "ddim",
        clip_sample: bool | None = None,
        clip_gradient: ClipGradient = "exact",
        encoder_iterations: int = 0,
        canonical: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if clip_gradient not in ("exact", "straight_through"):
            raise ValueError(f"clip_gradient must be 'exact' or 'straight_through', not {clip_gradient!r}")
        if int(encoder_iterations) < 0:
            raise ValueError("encoder_iterations must be >= 0")
        self.unet = unet
        self.scheduler = scheduler
        self.num_inference_steps = int(num_inference_steps)
        scheduler.set_timesteps(self.num_inference_steps)
        self.timesteps = [int(t) for t in scheduler.timesteps]
        self.clip_sample = bool(scheduler.config.clip_sample) if clip_sample is None else bool(clip_sample)
        self.clip_gradient: ClipGradient = clip_gradient
        self.encoder_iterations = int(encoder_iterations)
        self._unclipped = _with_clip(scheduler, False)
        self._clipped = _with_clip(scheduler, True) if self.clip_sample else None
        for copied in (self._unclipped, self._clipped):
            if copied is not None:
                copied.set_timesteps(self.num_inference_steps)
        self.canonical = dict(canonical) if canonical is not None else self.default_sampler(scheduler)
        self.id = id
        size = unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else size
        self.latent_shape = (int(unet.config.in_channels), int(height), int(width))
        self.eval()

    # -- identity --------------------------------------------------------------------------------------
    @staticmethod
    def sampler_settings(
        scheduler,
        num_inference_steps: int,
        clip_sample: bool | None = None,
        clip_gradient: ClipGradient = "exact",
        encoder_iterations: int = 0,
    ) -> dict[str, Any]:
        """Everything about the sampler that changes decodes or inversion scores, as a JSON-ready dict."""
        config = scheduler.config
        probe = _with_clip(scheduler, bool(config.clip_sample))
        probe.set_timesteps(int(num_inference_steps))
        clip = bool(config.clip_sample) if clip_sample is None else bool(clip_sample)
        return {
            "scheduler": type(scheduler).__name__,
            "num_inference_steps": int(num_inference_steps),
            "timesteps": [int(t) for t in probe.timesteps],
            "timestep_spacing": str(config.timestep_spacing),
            "eta": 0.0,
            "prediction_type": str(config.prediction_type),
            "clip_sample": clip,
            "clip_sample_range": float(config.clip_sample_range) if clip else None,
            "clip_gradient": clip_gradient if clip else None,
            "thresholding": bool(config.get("thresholding", False)),
            "encoder": {"kind": "ddim_inversion", "fixed_point_iterations": int(encoder_iterations)},
        }

    @classmethod
    def default_sampler(cls, scheduler) -> dict[str, Any]:
        """The settings the adapter always used: the scheduler as saved, 20 steps, exact gradient, plain inversion."""
        return cls.sampler_settings(scheduler, DEFAULT_STEPS)

    @property
    def sampler(self) -> dict[str, Any]:
        """This generator's sampler settings (see :meth:`sampler_settings`)."""
        return self.sampler_settings(
            self.scheduler, self.num_inference_steps, self.clip_sample, self.clip_gradient, self.encoder_iterations
        )

    def with_sampler(self, settings: dict[str, Any]) -> DDIMGenerator:
        """The same weights sampled as ``settings`` (a :attr:`sampler` dict, e.g. a calibration's) say: steps,
        clipping, clip gradient and encoder; ``ValueError`` naming the settings this scheduler cannot give."""
        encoder = settings.get("encoder") or {}
        gen = DDIMGenerator(
            self.unet,
            self.scheduler,
            int(settings.get("num_inference_steps", self.num_inference_steps)),
            id=self.id,
            clip_sample=settings.get("clip_sample", self.clip_sample),
            clip_gradient=settings.get("clip_gradient") or "exact",
            encoder_iterations=int(encoder.get("fixed_point_iterations", 0)),
            canonical=self.canonical,
        )
        differ = sampler_differences(settings, gen.sampler)
        if differ:
            raise ValueError(f"the scheduler of {self.id} cannot be set to the recorded sampler: {differ}")
        return gen.to(self.device).eval()

    def weight_hash(self) -> str:
        """The plain weight hash for the canonical sampler; otherwise sha256 of it and the sampler settings."""
        weights = weights_sha256(*self.modules())
        sampler = self.sampler
        if sampler == self.canonical:
            return weights
        blob = json.dumps({"weights": weights, "sampler": sampler}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    # -- the chain -------------------------------------------------------------------------------------
    def step(self, eps: torch.Tensor, t: int, x: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step from ``x`` at timestep ``t`` given the UNet output ``eps``."""
        if self._clipped is None:
            return self._unclipped.step(eps, t, x, eta=0.0).prev_sample
        clipped = self._clipped.step(eps, t, x, eta=0.0).prev_sample
        if self.clip_gradient == "straight_through":
            free = self._unclipped.step(eps, t, x, eta=0.0).prev_sample
            return clipped.detach() + (free - free.detach())  # value: the clipped step, bit for bit
        return clipped

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        for t in self.timesteps:
            x = self.step(self.unet(x, t).sample, t, x)
        return to_unit_range(x, "tanh")

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """x_T for ``images`` in [0, 1] by deterministic DDIM inversion over the same timesteps."""
        x = images.to(torch.float32) * 2 - 1
        return ddim_inversion(self.unet, self.scheduler, self.timesteps, x, self.encoder_iterations)

    @property
    def has_encoder(self) -> bool:
        return True

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet]


@torch.no_grad()
def ddim_inversion(unet, scheduler, timesteps: list[int], x: torch.Tensor, iterations: int = 0) -> torch.Tensor:
    """x_T from ``x`` (the chain's output, in the UNet's space) by deterministic DDIM inversion over
    ``timesteps`` (in sampling order); each backward step refined by ``iterations`` fixed-point iterations (ε
    evaluated at the point solved for), which inverts the unclipped chain exactly where the iteration converges."""
    alphas = scheduler.alphas_cumprod.to(x.device, torch.float32)
    final = torch.as_tensor(float(scheduler.final_alpha_cumprod), device=x.device)
    stride = scheduler.config.num_train_timesteps // len(timesteps)
    for t in reversed(timesteps):
        a_from = alphas[t - stride] if t - stride >= 0 else final
        a_to = alphas[t]
        eps = unet(x, t).sample
        x0 = (x - (1 - a_from).sqrt() * eps) / a_from.sqrt()
        x_t = a_to.sqrt() * x0 + (1 - a_to).sqrt() * eps
        for _ in range(iterations):  # solve x_t = back(x, ε(x_t))
            eps = unet(x_t, t).sample
            x0 = (x - (1 - a_from).sqrt() * eps) / a_from.sqrt()
            x_t = a_to.sqrt() * x0 + (1 - a_to).sqrt() * eps
        x = x_t
    return x


def sampler_differences(recorded: dict[str, Any], actual: dict[str, Any]) -> str:
    """The sampler settings in which two :attr:`DDIMGenerator.sampler` dicts differ, as ``key: a != b`` text."""
    keys = [k for k in sorted(set(recorded) | set(actual)) if recorded.get(k) != actual.get(k)]
    return "; ".join(f"{k}: {recorded.get(k)!r} != {actual.get(k)!r}" for k in keys)


def _with_clip(scheduler, clip: bool):
    """A copy of ``scheduler`` with x_0 clipping on or off (timesteps not set)."""
    if bool(scheduler.config.clip_sample) == clip:
        return copy.deepcopy(scheduler)
    return type(scheduler).from_config(scheduler.config, clip_sample=clip)
