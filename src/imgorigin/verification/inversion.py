"""Batched input reverse-engineering: find, for each image, the latent whose decode reproduces it best.

The score of an image is the lowest reconstruction distance reached over all iterations and restarts
(Wang et al., NeurIPS 2023). Many images × restarts are optimised together: each image owns ``restarts``
rows; when an image stops improving (or reaches ``steps``) its rows are handed to the next image in the
queue, so early stopping turns directly into throughput. Restarts are independent rows owned by an
image; after ``prune_after`` steps an image keeps only its best row and the freed rows go to the queue. Adam
is written out per row so that every image keeps its own step count, learning-rate schedule and moments.

Adam finds the basin; it is slow at the bottom of it, where GAN generators are badly conditioned (members of
the zoo DCGAN still sat at MSE ~1e-3 after 200 steps). So for the MSE distance and latents of at most
``refine_max_dim`` values, Adam stops after ``refine_after`` steps and each image's best latent is refined by
Levenberg–Marquardt (Gauss–Newton with adaptive damping) on the residual, with a forward-difference Jacobian
that needs only forward passes, so any model the engine can decode (TorchScript included) qualifies. A
member then reaches the 8-bit quantisation floor (~1e-6), a non-member cannot: in about ten iterations on the
zoo's 28×28 GANs, but only linearly, over 30–100 iterations with plateaus, from where Adam leaves the members of
a 64×64 RGB DCGAN; so the refinement stops on its own, looser tolerance (``refine_rel_tol``: < 10 % better over
``refine_patience`` = 10 iterations), which ends a non-member's flat progress early without cutting a member's.

Some members still end in a wrong basin. With ``retries`` > 0, an image whose best distance stays above
``retry_above`` goes back to the queue for another whole attempt from fresh starts (seeded by its key and the
attempt number); its score is the best over all attempts.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from imgorigin.errors import UsageError
from imgorigin.verification.distances import get_distance
from imgorigin.verification.generators.base import Generator

InitMode = Literal["auto", "random", "search", "encoder", "learned"]
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
#: Cosine schedule decays the learning rate to this fraction of ``lr`` at the last Adam step.
LR_FLOOR = 0.05
#: Levenberg–Marquardt: starting damping (relative to diag(JᵀJ)), its change on a rejected / accepted step,
#: the damping beyond which an image counts as stuck, and the forward-difference step (× max(1, rms(z))).
LM_DAMPING, LM_UP, LM_DOWN, LM_MAX_DAMPING, LM_FD_STEP = 1e-2, 4.0, 3.0, 1e4, 1e-3
#: Most Jacobian entries held at once (float32): bounds the refinement's memory (~128 MB).
LM_JACOBIAN_BUDGET = 2**25
#: The refinement's stopping rule and budget before it got its own tolerance (files and zoo calibrations made
#: then keep it): 60 iterations, patience 5, Adam's 1 % tolerance.
EARLIER_REFINEMENT: dict[str, Any] = {"refine_steps": 60, "refine_patience": 5, "refine_rel_tol": 1e-2}


def _setting(default: Any, text: str) -> Any:
    """A field of :class:`InversionConfig` with its help text, from which the CLI builds its options."""
    return field(default=default, metadata={"help": text})


def spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve ``a x = b`` for a batch of symmetric positive-definite ``a`` by Cholesky.

    Not ``torch.linalg.solve``: with torch 2.13's CPU build at 2 threads, its batched LU of float64 systems larger
    than 128 x 128 prints "oneMKL ERROR ... DLASWP" and never returns (the zoo LDM's 196-value latent hit it).
    A system that is not numerically positive-definite is solved on its own (unbatched LU works)."""
    factor, info = torch.linalg.cholesky_ex(a)
    x = torch.cholesky_solve(b, factor)
    for i in torch.nonzero(info).flatten().tolist():
        x[i] = torch.linalg.solve(a[i], b[i])
    return x


@dataclass(frozen=True)
class InversionConfig:
    """Settings of one inversion; stored in calibration files so verification reuses them exactly."""

    steps: int = _setting(200, "Most Adam steps per image (when the refinement applies: refine_after).")
    lr: float = _setting(0.2, "Adam learning rate (paper: 0.1; 0.2 measured best on the zoo DCGAN at 160 steps).")
    restarts: int = _setting(4, "Latents optimised per image; the best one counts.")
    prune_after: int = _setting(25, "After this many steps keep only each image's best restart (0: never).")
    init: InitMode = _setting(
        "auto",
        "Start latents: auto (encoder when the model has one, else search; calibrate chooses learned for a model "
        "without one), random, search, encoder, learned (an initialiser calibrate trains on the model's samples).",
    )
    search_candidates: int = _setting(16, "Random latents scored (forward only) per restart kept, for init=search.")
    patience: int = _setting(40, "Stop an image once its best loss improved by < tolerance over this many steps.")
    rel_tol: float = _setting(1e-2, "Adam's tolerance, relative to the best loss at the start of the patience window.")
    abs_tol: float = _setting(
        1e-7, "Plus this, in distance units (a tenth of the 8-bit quantisation MSE, 1.3e-6), in the tolerance."
    )
    batch_size: int = _setting(64, "Images optimised at once (rows = batch_size x restarts): bounds memory.")
    distance: str = _setting("mse", "Reconstruction distance: mse, l1 or ssim (the refinement needs mse).")
    schedule: Literal["cosine", "constant"] = _setting(
        "cosine", "Adam learning-rate schedule: cosine (down to 5 % of lr at the last step) or constant."
    )
    seed: int = _setting(0, "Seed of every image's random starts (mixed with the image's content hash).")
    refine_steps: int = _setting(100, "Most Levenberg-Marquardt iterations after Adam (MSE only); 0: Adam only.")
    refine_after: int = _setting(25, "Adam steps before the refinement takes over, when it applies.")
    refine_max_dim: int = _setting(
        256, "Refine only latents with at most this many values (Jacobian cost grows with it)."
    )
    refine_patience: int = _setting(
        10, "Stop refining once the loss improved by < refine_rel_tol (+ abs_tol) over this many iterations."
    )
    refine_rel_tol: float = _setting(
        0.1, "The refinement's tolerance, relative to the best loss at the start of its patience window."
    )
    refine_broyden: int = _setting(
        3, "Broyden-updated Jacobians between two measured ones (a measurement costs one forward per latent value)."
    )
    refine_count_all: bool = _setting(
        False,
        "Count a step rejected on a Broyden-updated Jacobian (which re-measures it) towards refine_patience too: "
        "a non-member's flat progress ends sooner.",
    )
    refine_cg_steps: int = _setting(
        0,
        "Latents above refine_max_dim: refine matrix-free (Gauss-Newton steps solved by this many conjugate-gradient "
        "iterations on Jacobian-vector products; needs autograd); 0: Adam only.",
    )
    retries: int = _setting(
        0, "More whole attempts (fresh random starts) for an image whose best stays above retry_above."
    )
    retry_above: float = _setting(
        1e-5, "Distance above which an attempt counts as failed (MSE: ~8x the 8-bit quantisation floor)."
    )

    def __post_init__(self) -> None:
        if self.rel_tol < 0 or self.refine_rel_tol < 0 or self.abs_tol < 0 or self.patience < 1:
            raise ValueError("rel_tol, refine_rel_tol and abs_tol must be >= 0 and patience >= 1")
        if self.prune_after < 0:
            raise ValueError("prune_after must be >= 0")
        if self.steps < 1 or self.restarts < 1 or self.batch_size < 1 or self.search_candidates < 1:
            raise ValueError("steps, restarts, batch_size and search_candidates must be >= 1")
        if self.refine_steps < 0 or self.refine_after < 1 or self.refine_max_dim < 1 or self.refine_patience < 1:
            raise ValueError("refine_steps must be >= 0; refine_after, refine_max_dim, refine_patience >= 1")
        if self.refine_broyden < 0 or self.retries < 0 or self.retry_above < 0 or self.refine_cg_steps < 0:
            raise ValueError("refine_broyden, refine_cg_steps, retries and retry_above must be >= 0")
        if self.init not in ("auto", "random", "search", "encoder", "learned"):
            raise ValueError(f"init must be auto, random, search, encoder or learned, not {self.init!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be cosine or constant, not {self.schedule!r}")
        get_distance(self.distance)

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> InversionConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (they would silently change the test)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown inversion settings {sorted(unknown)}")
        # settings older files lack, as those files were computed: before the refinement existed (Adam only), and
        # before it stopped on its own rule (Adam's rel_tol, patience 5)
        written_before = {
            "refine_steps": 0,
            "refine_patience": EARLIER_REFINEMENT["refine_patience"],
            "refine_rel_tol": data.get("rel_tol", EARLIER_REFINEMENT["refine_rel_tol"]),
        }
        return cls(**{**written_before, **data})


@dataclass
class InversionResult:
    """Per-image outcome: best distance, steps used, optionally the best latent; total wall time."""

    scores: np.ndarray
    steps: np.ndarray
    seconds: float
    latents: torch.Tensor | None = None


#: Called as each image finishes (after its last attempt): (image index, best score, steps used over all
#: attempts: Adam steps + refinement iterations).
DoneCallback = Callable[[int, float, int], None]


class Finished(NamedTuple):
    """One image whose inversion is over: its index in the batch, best distance, steps over all attempts and
    (when asked for) the best latent."""

    index: int
    score: float
    steps: int
    latent: torch.Tensor | None


def image_key(image: torch.Tensor) -> str:
    """Content hash of an image tensor, used to seed its restarts independently of batch composition."""
    return hashlib.sha256(image.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


def attempt_key(key: str, attempt: int) -> str:
    """The seed key of an image's attempt ``attempt`` (0: the image's own key): every retry draws new starts."""
    return key if attempt == 0 else f"{key}:attempt{attempt}"


def _image_rng(seed: int, key: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


class _Active:
    """What is being optimised now: a table of images and a table of rows (restarts), each row owned by an image.

    Rows are independent so that an image can drop its worse restarts (pruning) and free rows for the queue.
    """

    def __init__(
        self, latent_shape: tuple[int, ...], image_shape: tuple[int, ...], device: torch.device, keep_latents: bool
    ) -> None:
        # per image
        self.index = torch.empty(0, dtype=torch.long)
        self.target = torch.empty((0, *image_shape), device=device)
        self.t = torch.empty(0, dtype=torch.long, device=device)
        self.best = torch.empty(0, device=device)
        self.anchor = torch.empty(0, device=device)
        self.stale = torch.empty(0, dtype=torch.long, device=device)
        self.best_z = torch.empty((0, *latent_shape), device=device) if keep_latents else None
        # per row
        self.owner = torch.empty(0, dtype=torch.long, device=device)
        self.z = torch.empty((0, *latent_shape), device=device)
        self.m = torch.empty_like(self.z)
        self.v = torch.empty_like(self.z)
        self.row_best = torch.empty(0, device=device)

    @property
    def n_images(self) -> int:
        return int(self.index.numel())

    @property
    def n_rows(self) -> int:
        return int(self.owner.numel())

    def add(self, index: torch.Tensor, z: torch.Tensor, target: torch.Tensor, restarts: int) -> None:
        n, device = index.numel(), self.z.device
        first = self.n_images
        self.index = torch.cat([self.index, index])
        self.target = torch.cat([self.target, target])
        self.t = torch.cat([self.t, torch.zeros(n, dtype=torch.long, device=device)])
        inf = torch.full((n,), math.inf, device=device)
        self.best, self.anchor = torch.cat([self.best, inf]), torch.cat([self.anchor, inf])
        self.stale = torch.cat([self.stale, torch.zeros(n, dtype=torch.long, device=device)])
        if self.best_z is not None:
            self.best_z = torch.cat([self.best_z, z[::restarts]])
        owner = torch.arange(first, first + n, device=device).repeat_interleave(restarts)
        self.owner = torch.cat([self.owner, owner])
        self.z = torch.cat([self.z, z])
        self.m = torch.cat([self.m, torch.zeros_like(z)])
        self.v = torch.cat([self.v, torch.zeros_like(z)])
        self.row_best = torch.cat([self.row_best, torch.full((z.shape[0],), math.inf, device=device)])

    def keep(self, keep_images: torch.Tensor, keep_rows: torch.Tensor) -> None:
        """Drop finished images (and all their rows) and pruned rows; renumber owners."""
        keep_rows = keep_rows & keep_images[self.owner]
        new_position = torch.cumsum(keep_images.long(), 0) - 1
        self.owner = new_position[self.owner[keep_rows]]
        self.z, self.m, self.v = self.z[keep_rows], self.m[keep_rows], self.v[keep_rows]
        self.row_best = self.row_best[keep_rows]
        self.index = self.index[keep_images.cpu()]
        self.target, self.t, self.best = self.target[keep_images], self.t[keep_images], self.best[keep_images]
        self.anchor, self.stale = self.anchor[keep_images], self.stale[keep_images]
        if self.best_z is not None:
            self.best_z = self.best_z[keep_images]


def _per_image_min(values: torch.Tensor, owner: torch.Tensor, n: int) -> torch.Tensor:
    return torch.full((n,), math.inf, device=values.device).scatter_reduce(0, owner, values, "amin")


class Inverter:
    """Runs batched inversion of images against one generator with one :class:`InversionConfig`."""

    def __init__(self, generator: Generator, config: InversionConfig | None = None) -> None:
        self.generator = generator
        self.config = config or InversionConfig()
        self.distance = get_distance(self.config.distance)
        init = self.config.init
        if init == "encoder" and not generator.has_encoder:
            raise UsageError(f"init='encoder' but model {generator.id} has no encoder; use auto, search or random")
        if init == "learned" and generator.init_sha256 is None:
            raise UsageError(
                f"init='learned' starts from the initialiser a calibration trained for model {generator.id}: verify "
                "with that calibration (it carries the initialiser), or run `imgorigin calibrate` to train one"
            )
        self.init = ("encoder" if generator.has_encoder else "search") if init == "auto" else init
        dim = math.prod(generator.latent_shape)
        #: Whether Levenberg–Marquardt refines Adam's result (MSE distance; a small enough latent, with a measured
        #: Jacobian, or any latent, matrix-free, when refine_cg_steps > 0).
        self.matrix_free = dim > self.config.refine_max_dim
        self.refines = (
            self.config.refine_steps > 0
            and self.config.distance == "mse"
            and (not self.matrix_free or self.config.refine_cg_steps > 0)
        )
        #: Adam steps per image: a short basin search before refinement, else the whole budget.
        self.adam_steps = min(self.config.refine_after, self.config.steps) if self.refines else self.config.steps

    def __call__(
        self,
        images: torch.Tensor,
        *,
        keys: Sequence[str] | None = None,
        callback: DoneCallback | None = None,
        progress: bool = False,
        return_latents: bool = False,
    ) -> InversionResult:
        """Invert ``images`` ``[N, C, H, W]`` in [0, 1]; ``keys`` (content hashes) seed each image's restarts."""
        n = images.shape[0] if images.dim() == 4 else 0
        scores, steps = np.full(n, np.inf), np.zeros(n, dtype=np.int64)
        latents = torch.empty((n, *self.generator.latent_shape)) if return_latents else None
        start = time.perf_counter()
        for done in self.finished(images, keys=keys, progress=progress, return_latents=return_latents):
            scores[done.index], steps[done.index] = done.score, done.steps
            if latents is not None:
                latents[done.index] = done.latent
            if callback is not None:
                callback(done.index, done.score, done.steps)
        return InversionResult(scores, steps, time.perf_counter() - start, latents)

    def finished(
        self,
        images: torch.Tensor,
        *,
        keys: Sequence[str] | None = None,
        progress: bool = False,
        return_latents: bool = False,
    ) -> Iterator[Finished]:
        """Invert ``images``, yielding each image as soon as its last attempt ends, so callers can record it at once."""
        gen = self.generator
        if images.dim() != 4 or tuple(images.shape[1:]) != gen.image_shape:
            raise ValueError(
                f"images of shape {tuple(images.shape[1:])} do not match model {gen.id} output "
                f"{gen.image_shape}; load them with the model's channels and size"
            )
        n = images.shape[0]
        keys = list(keys) if keys is not None else [image_key(img) for img in images]
        scores = np.full(n, np.inf)
        steps = np.zeros(n, dtype=np.int64)
        attempts = np.zeros(n, dtype=np.int64)  # attempts made; each draws fresh starts (see _admit)
        best_z: list[torch.Tensor | None] = [None] * n
        active = _Active(gen.latent_shape, gen.image_shape, gen.device, return_latents or self.refines)
        queue = deque(range(n))
        pending: list[tuple[int, torch.Tensor, torch.Tensor, float, int]] = []  # Adam done, refinement not
        ready: list[Finished] = []
        from tqdm.auto import tqdm

        def finish(i: int, score: float, used: int, z: torch.Tensor | None) -> None:
            steps[i] += used
            attempts[i] += 1
            if score < scores[i]:
                scores[i] = score
                if return_latents:
                    best_z[i] = z.cpu()
            if scores[i] > self.config.retry_above and attempts[i] <= self.config.retries:
                queue.append(i)  # a failed attempt: try again from fresh starts, keep the best
                return
            ready.append(Finished(i, float(scores[i]), int(steps[i]), best_z[i]))
            best_z[i] = None
            bar.update(1)

        with tqdm(total=n, desc=f"inverting ({gen.id})", unit="img", disable=not progress, leave=False) as bar:
            while queue or active.n_images or pending:
                self._admit(active, queue, images, keys, attempts)
                if active.n_images:
                    done, keep_rows = self._step(active)
                    if bool(done.any()) or not bool(keep_rows.all()):
                        for s in torch.nonzero(done.cpu()).flatten().tolist():
                            i, z = int(active.index[s]), None if active.best_z is None else active.best_z[s]
                            if self.refines:
                                pending.append((i, z, active.target[s], float(active.best[s]), int(active.t[s])))
                            else:
                                finish(i, float(active.best[s]), int(active.t[s]), z)
                        active.keep(~done, keep_rows)
                        self._admit(active, queue, images, keys, attempts)
                if pending and (len(pending) >= self.config.batch_size or not active.n_images):
                    refining, pending = pending, []
                    for k, z, score, iters in self._refine(refining):
                        finish(refining[k][0], score, refining[k][4] + iters, z)
                        yield from ready
                        ready.clear()
                yield from ready
                ready.clear()

    # -- internals -------------------------------------------------------------------------------------
    def _admit(
        self, active: _Active, queue: deque, images: torch.Tensor, keys: list[str], attempts: np.ndarray
    ) -> None:
        """Give free rows (``batch_size × restarts`` in all) to queued images, freshly initialised.

        A retried image's starts are seeded by its key and attempt number, so every attempt draws new ones; a retry
        of an encoder (or learned) start searches instead, since the encoder would give the same start again.
        """
        r = self.config.restarts
        free = min((self.config.batch_size * r - active.n_rows) // r, len(queue))
        if free <= 0:
            return
        index = torch.tensor([queue.popleft() for _ in range(free)], dtype=torch.long)
        target = images[index].to(self.generator.device, torch.float32)
        keyed = [attempt_key(keys[i], int(attempts[i])) for i in index.tolist()]
        retry = attempts[index.numpy()] > 0
        z = torch.empty((len(keyed) * r, *self.generator.latent_shape), device=self.generator.device)
        again = "search" if self.init in ("encoder", "learned") else self.init
        for mask, kind in ((~retry, self.init), (retry, again)):
            if mask.any():
                chosen = np.flatnonzero(mask)
                rows = torch.from_numpy((chosen[:, None] * r + np.arange(r)).ravel())
                z[rows] = self._initial_latents(target[chosen], [keyed[i] for i in chosen], kind)
        active.add(index, z, target, r)

    @torch.no_grad()
    def _initial_latents(self, target: torch.Tensor, keys: list[str], init: str) -> torch.Tensor:
        """``[B × restarts, *latent]`` starting latents: encoder (or learned initialiser) output (+ noise for extra
        restarts), random, or search."""
        gen, cfg = self.generator, self.config
        rngs = [_image_rng(cfg.seed, k) for k in keys]
        r = cfg.restarts
        if init in ("encoder", "learned"):
            z0 = gen.encode(target).repeat_interleave(r, 0)
            flat = z0.flatten(1)
            spread = flat.std(1) if flat.shape[1] > 1 else torch.zeros(len(flat), device=flat.device)
            scale = spread.clamp_min(1e-6).view(-1, *([1] * (z0.dim() - 1)))
            noise = torch.cat([gen.sample_latents(r, g) for g in rngs]).to(z0)
            noise[::r] = 0  # restart 0 of every image starts exactly at the encoder output
            return z0 + 0.1 * scale * noise
        if init == "random":
            return torch.cat([gen.sample_latents(r, g) for g in rngs])
        k = cfg.search_candidates
        chosen = []
        for image, g in zip(target, rngs, strict=True):
            candidates = gen.sample_latents(r * k, g)
            losses = torch.cat(
                [
                    self.distance(gen.decode(chunk), image.expand(len(chunk), *image.shape))
                    for chunk in candidates.split(cfg.batch_size * r)
                ]
            )
            chosen.append(candidates[losses.topk(r, largest=False).indices])
        return torch.cat(chosen)

    def _step(self, active: _Active) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step on every row; returns (finished images, rows kept after pruning)."""
        cfg = self.config
        z = active.z.detach().requires_grad_(True)
        losses = self.distance(self.generator.decode(z), active.target[active.owner])
        (grad,) = torch.autograd.grad(losses.sum(), z)
        with torch.no_grad():
            losses = losses.detach()
            active.row_best = torch.minimum(active.row_best, losses)
            per_image = _per_image_min(losses, active.owner, active.n_images)
            if active.best_z is not None:
                better = per_image < active.best
                rows = better[active.owner] & (losses == per_image[active.owner])
                active.best_z[active.owner[rows]] = z.detach()[rows]
            active.best = torch.minimum(active.best, per_image)
            improved = active.best < active.anchor * (1 - cfg.rel_tol) - cfg.abs_tol
            active.anchor = torch.where(improved, active.best, active.anchor)
            active.stale = torch.where(improved, torch.zeros_like(active.stale), active.stale + 1)
            active.t += 1
            b1, b2 = ADAM_BETAS
            shape = (-1, *([1] * (z.dim() - 1)))
            t_rows = active.t[active.owner]
            t = t_rows.view(shape).to(z.dtype)
            active.m.mul_(b1).add_(grad, alpha=1 - b1)
            active.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            m_hat = active.m / (1 - b1**t)
            v_hat = active.v / (1 - b2**t)
            lr = self._learning_rate(t_rows - 1).view(shape)
            active.z = z.detach() - lr * m_hat / (v_hat.sqrt() + ADAM_EPS)
            keep_rows = torch.ones_like(active.owner, dtype=torch.bool)
            if cfg.prune_after and cfg.restarts > 1:
                pruning = (active.t == cfg.prune_after)[active.owner]
                if bool(pruning.any()):
                    keep_rows = ~pruning | self._best_row_mask(active)
        return (active.stale >= cfg.patience) | (active.t >= self.adam_steps), keep_rows

    @staticmethod
    def _best_row_mask(active: _Active) -> torch.Tensor:
        """One row per image: its restart with the lowest loss so far (the first on ties)."""
        best = _per_image_min(active.row_best, active.owner, active.n_images)
        candidate = active.row_best == best[active.owner]
        row_ids = torch.arange(active.n_rows, device=active.owner.device)
        big = torch.full((active.n_images,), active.n_rows, device=active.owner.device, dtype=torch.long)
        first = big.scatter_reduce(0, active.owner[candidate], row_ids[candidate], "amin")
        return row_ids == first[active.owner]

    def _learning_rate(self, t: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.schedule == "constant":
            return torch.full(t.shape, cfg.lr, device=t.device)
        progress = t.float() / self.adam_steps
        return cfg.lr * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + torch.cos(math.pi * progress)))

    @torch.no_grad()
    def _refine(
        self, items: list[tuple[int, torch.Tensor, torch.Tensor, float, int]]
    ) -> Iterator[tuple[int, torch.Tensor, float, int]]:
        """Levenberg–Marquardt on each item's best latent, yielding (item position, latent, best loss, iterations)
        as each item stops, so that a batch run can record it at once."""
        gen = self.generator
        dim = math.prod(gen.latent_shape)
        pixels = math.prod(gen.image_shape)
        group = len(items) if self.matrix_free else max(1, min(len(items), LM_JACOBIAN_BUDGET // (dim * pixels)))
        solve = self._matrix_free_lm if self.matrix_free else self._levenberg_marquardt
        for first in range(0, len(items), group):
            chunk = items[first : first + group]
            start = torch.stack([item[1] for item in chunk]).flatten(1)
            target = torch.stack([item[2] for item in chunk]).flatten(1)
            for k, z, loss, iters in solve(start.clone(), target):
                if loss >= chunk[k][3]:  # Adam's best stands
                    z, loss = start[k], chunk[k][3]
                yield first + k, z.view(gen.latent_shape), loss, iters

    def _levenberg_marquardt(
        self, z: torch.Tensor, target: torch.Tensor
    ) -> Iterator[tuple[int, torch.Tensor, float, int]]:
        """Minimise mean((decode(z) − target)²) per row of flat latents ``z``; stop rows that stop improving,
        yielding (row, latent, loss, iterations) as each row stops.

        Forward passes are the cost, so the Jacobian is measured afresh only every ``refine_broyden + 1`` accepted
        steps and Broyden-updated in between (no forward pass); a step rejected on an updated Jacobian first
        re-measures it, and only a step rejected on a fresh one raises the damping.
        """
        cfg = self.config
        n = z.shape[0]
        residual = self._decode_flat(z) - target
        loss = residual.pow(2).mean(1)
        jac = torch.empty((n, residual.shape[1], z.shape[1]), dtype=z.dtype, device=z.device)
        damping = torch.full((n,), LM_DAMPING, dtype=torch.float64, device=z.device)
        since_fresh = torch.full((n,), cfg.refine_broyden + 1, dtype=torch.long, device=z.device)  # 0: fresh
        iters = torch.zeros(n, dtype=torch.long, device=z.device)
        anchor, stale = loss.clone(), torch.zeros(n, dtype=torch.long, device=z.device)
        running = torch.ones(n, dtype=torch.bool, device=z.device)
        for _ in range(cfg.refine_steps):
            measure = torch.nonzero(running & (since_fresh > cfg.refine_broyden)).flatten()
            if measure.numel():
                jac[measure] = self._jacobian(z[measure], residual[measure] + target[measure])
                since_fresh[measure] = 0
            rows = torch.nonzero(running).flatten()
            j = jac[rows].double()
            jtj = j.mT @ j
            grad = (j.mT @ residual[rows].double().unsqueeze(-1)).squeeze(-1)
            diag = jtj.diagonal(dim1=1, dim2=2)
            scale = diag + 1e-9 * diag.mean(1, keepdim=True) + 1e-30
            step = -spd_solve(jtj + torch.diag_embed(damping[rows, None] * scale), grad.unsqueeze(-1))
            step = step.squeeze(-1).to(z.dtype)
            residual_new = self._decode_flat(z[rows] + step) - target[rows]
            loss_new = residual_new.pow(2).mean(1)
            accept = loss_new < loss[rows]
            # Broyden: J += (Δr − J·Δz) Δzᵀ / ‖Δz‖², from the step just evaluated (accepted or not)
            miss = residual_new - residual[rows] - (jac[rows] @ step.unsqueeze(-1)).squeeze(-1)
            jac[rows] += miss.unsqueeze(-1) * (step / step.pow(2).sum(1, keepdim=True).clamp_min(1e-30)).unsqueeze(1)
            z[rows] = torch.where(accept[:, None], z[rows] + step, z[rows])
            residual[rows] = torch.where(accept[:, None], residual_new, residual[rows])
            loss[rows] = torch.where(accept, loss_new, loss[rows])
            fresh = since_fresh[rows] == 0
            damping[rows] = torch.where(
                accept, damping[rows] / LM_DOWN, torch.where(fresh, damping[rows] * LM_UP, damping[rows])
            )
            since_fresh[rows] = torch.where(accept | fresh, since_fresh[rows] + 1, cfg.refine_broyden + 1)
            iters[rows] += 1
            # a rejection on a Broyden-updated Jacobian only triggers a measurement, unless every iteration counts
            counted = torch.ones_like(accept) if cfg.refine_count_all else accept | fresh
            for row in self._stopped(rows, loss, anchor, stale, running, damping, counted):
                yield row, z[row], float(loss[row]), int(iters[row])
            if not bool(running.any()):
                return
        for row in torch.nonzero(running).flatten().tolist():  # the iteration budget is spent
            yield row, z[row], float(loss[row]), int(iters[row])

    def _stopped(
        self,
        rows: torch.Tensor,
        loss: torch.Tensor,
        anchor: torch.Tensor,
        stale: torch.Tensor,
        running: torch.Tensor,
        damping: torch.Tensor,
        counted: torch.Tensor,
    ) -> list[int]:
        """The refinement's stopping rule, updating ``anchor``/``stale``/``running`` in place: a row stops once its
        loss improved by < refine_rel_tol (+ abs_tol) over ``refine_patience`` counted iterations, or its damping
        says it is stuck. Returns the rows that stop now."""
        cfg = self.config
        improved = loss[rows] < anchor[rows] * (1 - cfg.refine_rel_tol) - cfg.abs_tol
        anchor[rows] = torch.where(improved, loss[rows], anchor[rows])
        stale[rows] = torch.where(improved, 0, stale[rows] + counted.long())
        running[rows] = (stale[rows] < cfg.refine_patience) & (damping[rows] <= LM_MAX_DAMPING)
        return rows[~running[rows]].tolist()

    def _matrix_free_lm(self, z: torch.Tensor, target: torch.Tensor) -> Iterator[tuple[int, torch.Tensor, float, int]]:
        """Levenberg–Marquardt for latents too large for a measured Jacobian: each step solves
        (JᵀJ + λ·s·I) δ = −Jᵀr by ``refine_cg_steps`` conjugate-gradient iterations on Jacobian-vector products
        (:meth:`_gauss_newton_step`), so no Jacobian is ever formed; s is the mean of diag(JᵀJ), estimated from
        one random probe. Same stopping rule and yields as :meth:`_levenberg_marquardt`."""
        cfg = self.config
        n = z.shape[0]
        residual = self._decode_flat(z) - target
        loss = residual.pow(2).mean(1)
        damping = torch.full((n,), LM_DAMPING, dtype=z.dtype, device=z.device)
        iters = torch.zeros(n, dtype=torch.long, device=z.device)
        anchor, stale = loss.clone(), torch.zeros(n, dtype=torch.long, device=z.device)
        running = torch.ones(n, dtype=torch.bool, device=z.device)
        for _ in range(cfg.refine_steps):
            rows = torch.nonzero(running).flatten()
            step = self._gauss_newton_step(z[rows], residual[rows], damping[rows])
            residual_new = self._decode_flat(z[rows] + step) - target[rows]
            loss_new = residual_new.pow(2).mean(1)
            accept = loss_new < loss[rows]
            z[rows] = torch.where(accept[:, None], z[rows] + step, z[rows])
            residual[rows] = torch.where(accept[:, None], residual_new, residual[rows])
            loss[rows] = torch.where(accept, loss_new, loss[rows])
            damping[rows] = torch.where(accept, damping[rows] / LM_DOWN, damping[rows] * LM_UP)
            iters[rows] += 1
            for row in self._stopped(rows, loss, anchor, stale, running, damping, torch.ones_like(accept)):
                yield row, z[row], float(loss[row]), int(iters[row])
            if not bool(running.any()):
                return
        for row in torch.nonzero(running).flatten().tolist():  # the iteration budget is spent
            yield row, z[row], float(loss[row]), int(iters[row])

    def _gauss_newton_step(self, z: torch.Tensor, residual: torch.Tensor, damping: torch.Tensor) -> torch.Tensor:
        """The damped Gauss–Newton step of each row, by conjugate gradients: J·v by a forward difference (one
        forward pass, so any model qualifies, as for the measured Jacobian) and Jᵀw by back-propagation."""
        with torch.enable_grad():
            zr = z.detach().requires_grad_(True)
            out = self._decode_flat(zr)
        base = out.detach()
        size = LM_FD_STEP * z.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1.0)

        def jv(v: torch.Tensor) -> torch.Tensor:
            h = size / v.pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-30)
            with torch.no_grad():
                return (self._decode_flat(z + h * v) - base) / h

        def jtw(w: torch.Tensor) -> torch.Tensor:
            return torch.autograd.grad(out, zr, grad_outputs=w, retain_graph=True)[0]

        probe = torch.randint(0, 2, z.shape, generator=torch.Generator().manual_seed(0)).to(z) * 2 - 1
        lam = (damping * (jv(probe).pow(2).sum(1) / z.shape[1] + 1e-12))[:, None]  # λ · mean diag(JᵀJ)
        b = -jtw(residual)
        x, r, p = torch.zeros_like(b), b.clone(), b.clone()
        rs = r.pow(2).sum(1)
        for _ in range(self.config.refine_cg_steps):
            ap = jtw(jv(p)) + lam * p
            alpha = rs / (p * ap).sum(1).clamp_min(1e-30)
            x, r = x + alpha[:, None] * p, r - alpha[:, None] * ap
            rs_new = r.pow(2).sum(1)
            p = r + (rs_new / rs.clamp_min(1e-30))[:, None] * p
            rs = rs_new
        return x.detach()

    def _jacobian(self, z: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """Forward-difference Jacobian ``[B, pixels, dim]`` of the flat decode at flat latents ``z``."""
        b, dim = z.shape
        h = LM_FD_STEP * z.pow(2).mean(1).sqrt().clamp_min(1.0)  # [B]
        shifted = (z[:, None, :] + torch.diag_embed(h[:, None].expand(b, dim))).reshape(b * dim, dim)
        outputs = torch.cat(
            [self._decode_flat(part) for part in shifted.split(self.config.batch_size * self.config.restarts * 4)]
        )
        return ((outputs.view(b, dim, -1) - base[:, None, :]) / h[:, None, None]).mT

    def _decode_flat(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator.decode(z.view(-1, *self.generator.latent_shape)).flatten(1)


def invert(
    generator: Generator, images: torch.Tensor, config: InversionConfig | None = None, **kwargs
) -> InversionResult:
    """Convenience wrapper: ``Inverter(generator, config)(images, **kwargs)``."""
    return Inverter(generator, config)(images, **kwargs)
