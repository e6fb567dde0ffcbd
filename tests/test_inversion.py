"""The batched inversion engine: members reconstruct far better than non-members, and the batching is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from imgorigin.images import quantize_8bit
from imgorigin.verification.distances import l1, mse, ssim_distance
from imgorigin.verification.generators import ModuleGenerator
from imgorigin.verification.inversion import InversionConfig, Inverter, invert
from tiny_models import TinyGenerator, real_like

FAST = InversionConfig(steps=150, restarts=2, patience=30, batch_size=16, search_candidates=8)


@pytest.fixture(scope="module")
def generator() -> ModuleGenerator:
    return ModuleGenerator(TinyGenerator(seed=0), [8], id="tiny")


def test_members_score_far_lower_than_real_like_and_other_model(generator):
    members = quantize_8bit(generator.sample(24, seed=1))
    twin = ModuleGenerator(TinyGenerator(seed=1), [8], id="twin")
    others = torch.cat([real_like(12, seed=2), quantize_8bit(twin.sample(12, seed=3))])
    scores_in = invert(generator, members, FAST).scores
    scores_out = invert(generator, others, FAST).scores
    labels = np.r_[np.ones(24), np.zeros(24)]
    auroc = roc_auc_score(labels, -np.r_[scores_in, scores_out])
    assert auroc >= 0.99
    assert np.median(scores_in) < 1e-4 < np.median(scores_out)


def test_score_is_independent_of_batch_composition(generator):
    images = quantize_8bit(generator.sample(6, seed=4))
    together = invert(generator, images, FAST).scores
    alone = np.array([invert(generator, images[i : i + 1], FAST).scores[0] for i in range(6)])
    np.testing.assert_allclose(together, alone, rtol=1e-3, atol=1e-7)


def test_deterministic_and_seed_dependent(generator):
    images = real_like(4, seed=5)
    a = invert(generator, images, FAST).scores
    b = invert(generator, images, FAST).scores
    c = invert(generator, images, InversionConfig(**{**FAST.to_dict(), "seed": 9})).scores
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_small_batch_size_streams_all_images_and_callback_sees_each(generator):
    images = real_like(7, seed=6)
    seen = []
    cfg = InversionConfig(**{**FAST.to_dict(), "batch_size": 3})
    result = Inverter(generator, cfg)(images, callback=lambda i, s, k: seen.append((i, s, k)))
    assert sorted(i for i, _, _ in seen) == list(range(7))
    assert all(result.scores[i] == s and result.steps[i] == k for i, s, k in seen)
    assert np.all(result.steps <= cfg.steps) and np.all(np.isfinite(result.scores))


def test_early_stopping_stops_each_image_on_its_own_before_the_cap(generator):
    images = quantize_8bit(generator.sample(8, seed=7))
    cap = 200  # Adam only (refine_steps=0): every step counted is an Adam step under the patience rule
    adam = {"steps": cap, "restarts": 2, "batch_size": 8, "search_candidates": 8, "refine_steps": 0}
    early = invert(generator, images, InversionConfig(**adam, patience=10))
    assert early.steps.max() < cap and len(set(early.steps.tolist())) >= 4  # each image stops when it stalls
    never = invert(generator, images, InversionConfig(**adam, patience=cap + 1))
    np.testing.assert_array_equal(never.steps, cap)  # patience longer than the cap: all run to the cap
    assert np.all(never.scores <= early.scores * (1 + 1e-3) + 1e-9)  # stopping only ever costs accuracy


def test_score_is_the_best_loss_of_the_returned_latent(generator):
    images = real_like(3, seed=8)
    result = invert(generator, images, FAST, return_latents=True)
    with torch.no_grad():
        recomputed = mse(generator.decode(result.latents), images).numpy()
    np.testing.assert_allclose(recomputed, result.scores, rtol=1e-4)


def test_more_steps_never_hurt(generator):
    images = real_like(4, seed=10)
    # Adam's budget only: the refinement's looser stop can end two runs a hair apart
    adam = dict(restarts=2, patience=10_000, init="random", refine_steps=0)
    short = invert(generator, images, InversionConfig(steps=10, **adam))
    long = invert(generator, images, InversionConfig(steps=200, **adam))
    assert np.all(long.scores <= short.scores + 1e-9)


def test_encoder_init_starts_at_the_encoder_output():
    decoder = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Unflatten(1, (1, 4, 4)))
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    with torch.no_grad():  # outputs inside (0, 1) (no clamping) and an encoder that exactly inverts them
        decoder[0].weight.mul_(0.1)
        decoder[0].bias.fill_(0.5)
        w = decoder[0].weight
        encoder[1].weight.copy_(torch.linalg.pinv(w))
        encoder[1].bias.copy_(-torch.linalg.pinv(w) @ decoder[0].bias)
    gen = ModuleGenerator(decoder, [4], output_range="unit", encoder=encoder)
    z = torch.rand(3, 4) * 0.1
    images = gen.decode(z).detach()
    result = invert(gen, images, InversionConfig(steps=1, restarts=1, init="auto"))
    assert result.scores.max() < 1e-10


def test_shape_mismatch_is_a_clear_error(generator):
    with pytest.raises(ValueError, match="do not match model tiny"):
        invert(generator, torch.rand(2, 3, 16, 16), FAST)


@pytest.mark.parametrize(
    "bad",
    [{"steps": 0}, {"init": "magic"}, {"distance": "nope"}, {"patience": 0}, {"retries": -1}, {"retry_above": -1.0}],
)
def test_config_validation(bad):
    with pytest.raises(ValueError):
        InversionConfig(**bad)


def test_config_round_trip_and_unknown_keys():
    cfg = InversionConfig(steps=7, lr=0.2)
    assert InversionConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        InversionConfig.from_dict({**cfg.to_dict(), "extra": 1})
    old = {k: v for k, v in cfg.to_dict().items() if not k.startswith("refine")}
    assert InversionConfig.from_dict(old).refine_steps == 0  # older files keep their Adam-only scores
    before = {
        k: v
        for k, v in InversionConfig(rel_tol=0.03).to_dict().items()
        if k not in ("refine_rel_tol", "refine_patience")
    }
    earlier = InversionConfig.from_dict(before)  # files from when rel_tol and patience 5 stopped the refinement
    assert (earlier.refine_rel_tol, earlier.refine_patience) == (0.03, 5)


def test_refinement_stops_on_its_own_tolerance_not_adams(generator):
    others = real_like(6, seed=4)
    base = dict(steps=25, refine_after=25, restarts=1, patience=1000, refine_patience=3)
    loose = invert(generator, others, InversionConfig(**base, refine_rel_tol=0.5)).steps
    tight = invert(generator, others, InversionConfig(**base, refine_rel_tol=1e-4)).steps
    assert np.all(loose <= tight) and loose.sum() < tight.sum()
    adam_loose = invert(generator, others, InversionConfig(**base, refine_rel_tol=1e-4, rel_tol=0.5)).steps
    np.testing.assert_array_equal(adam_loose, tight)


def test_distances_hand_values():
    a = torch.zeros(2, 1, 11, 11)
    b = torch.full((2, 1, 11, 11), 0.5)
    np.testing.assert_allclose(mse(a, b).numpy(), [0.25, 0.25])
    np.testing.assert_allclose(l1(a, b).numpy(), [0.5, 0.5])
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim_distance(x, x).abs().max() < 1e-5
    assert (ssim_distance(x, x.flip(-1)) > 0.1).all()


class CountingGenerator(ModuleGenerator):
    """Counts decoded rows, to measure the work the engine does."""

    rows = 0

    def decode(self, z):
        CountingGenerator.rows += z.shape[0]
        return super().decode(z)


def test_pruning_to_the_best_restart_cuts_work_and_keeps_separation():
    gen = CountingGenerator(TinyGenerator(seed=0), [8], id="counted")
    members = quantize_8bit(gen.sample(8, seed=11))
    others = real_like(8, seed=12)
    work, aurocs = {}, {}
    for prune in (0, 10):
        cfg = InversionConfig(
            steps=80, restarts=4, patience=1000, batch_size=8, search_candidates=4, prune_after=prune, refine_steps=0
        )
        CountingGenerator.rows = 0
        s_in, s_out = invert(gen, members, cfg).scores, invert(gen, others, cfg).scores
        work[prune] = CountingGenerator.rows
        aurocs[prune] = roc_auc_score(np.r_[np.ones(8), np.zeros(8)], -np.r_[s_in, s_out])
    search = 2 * 8 * 4 * 4  # forward-only candidates, the same in both runs
    assert (work[10] - search) == pytest.approx((work[0] - search) * (4 * 10 + 70) / (4 * 80), rel=0.02)
    assert aurocs[10] == aurocs[0] == 1.0


def test_refinement_reaches_the_quantisation_floor_that_adam_alone_does_not(generator):
    members = quantize_8bit(generator.sample(8, seed=13))
    adam_only = InversionConfig(steps=25, restarts=2, patience=1000, refine_steps=0)
    refined = InversionConfig(steps=200, refine_after=25, restarts=2, patience=1000)
    a = invert(generator, members, adam_only).scores
    r = invert(generator, members, refined)
    assert Inverter(generator, refined).refines and not Inverter(generator, adam_only).refines
    assert np.all(r.scores <= a + 1e-9)
    assert np.median(r.scores) < 1e-5 < np.median(a)  # 8-bit floor is ~1.3e-6
    assert np.all(r.steps > 25)  # refinement iterations are counted after the 25 Adam steps


@pytest.mark.parametrize("kind", ["l1", "large_latent"])
def test_refinement_only_applies_to_mse_on_small_latents(generator, kind):
    cfg = InversionConfig(distance="l1") if kind == "l1" else InversionConfig(refine_max_dim=4)
    inverter = Inverter(generator, cfg)
    assert not inverter.refines and inverter.adam_steps == cfg.steps


def test_retries_give_failed_images_fresh_starts_and_keep_the_best(generator):
    members = quantize_8bit(generator.sample(6, seed=14))
    images = torch.cat([members, real_like(4, seed=15)])
    weak = InversionConfig(steps=8, restarts=1, patience=1000, refine_steps=0, init="random")  # fails often
    once = invert(generator, images, weak)
    threshold = float(np.median(once.scores))
    retried = Inverter(generator, InversionConfig(**{**weak.to_dict(), "retries": 3, "retry_above": threshold}))
    seen = []
    again = retried(images, callback=lambda i, s, k: seen.append((i, s, k)), return_latents=True)
    assert sorted(i for i, _, _ in seen) == list(range(10))  # one callback per image, after its last attempt
    passed = once.scores <= threshold
    np.testing.assert_array_equal(again.scores[passed], once.scores[passed])  # passed at once: one attempt
    np.testing.assert_array_equal(again.steps[passed], once.steps[passed])
    assert np.all(again.scores <= once.scores) and np.all(again.steps[~passed] > once.steps[~passed])
    assert np.any(again.scores[~passed] < once.scores[~passed])  # fresh starts found better latents
    np.testing.assert_array_equal(again.steps[~passed & (again.scores > threshold)], 4 * 8)  # 1 + 3 attempts
    with torch.no_grad():  # the returned latent is the best attempt's
        np.testing.assert_allclose(mse(generator.decode(again.latents), images).numpy(), again.scores, rtol=1e-4)


def test_spd_solve_batched_above_128_at_two_threads_returns_and_is_exact():
    # torch 2.13's batched float64 LU hangs there (oneMKL DLASWP error); run in a child so a hang fails, not stalls
    import subprocess
    import sys

    code = """
import torch
from imgorigin.verification.inversion import spd_solve
torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
a = torch.randn(4, 196, 196, dtype=torch.float64, generator=g)
a = a @ a.mT + 196 * torch.eye(196, dtype=torch.float64)
a[3] = torch.diag(torch.linspace(-1.0, 1.0, 196, dtype=torch.float64)) + 1e-3  # not positive-definite
b = torch.randn(4, 196, 1, dtype=torch.float64, generator=g)
x = spd_solve(a, b)
print(float((a @ x - b).abs().max()))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-8


class WideDecoder(torch.nn.Module):
    """z [300] → 1×20×20 through a random, well-conditioned smooth map: a latent above refine_max_dim (256)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = torch.nn.Parameter(torch.randn(300, 400, generator=g) / 300**0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(0.8 * z @ self.w).view(-1, 1, 20, 20)


def test_matrix_free_refinement_brings_large_latents_to_the_floor():
    gen = ModuleGenerator(WideDecoder(), (300,), id="wide", output_range="tanh")
    images = quantize_8bit(gen.sample(6, seed=1))
    base = dict(steps=40, refine_after=20, restarts=1, init="random")
    adam = invert(gen, images, InversionConfig(**base)).scores
    cg = Inverter(gen, InversionConfig(**base, refine_cg_steps=20))
    assert cg.matrix_free and cg.refines
    refined = cg(images).scores
    # Adam alone stops far above the 8-bit floor (1.3e-6); Gauss-Newton steps by conjugate gradients reach it
    assert float(np.median(adam)) > 1e-4
    assert float(refined.max()) < 3e-6
    assert not Inverter(gen, InversionConfig(**base)).refines  # off by default above refine_max_dim
