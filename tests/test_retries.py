"""Retries chosen by the calibration from the model's own samples (imgorigin.verification.retries)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from imgorigin.verification import calibrate
from imgorigin.verification.generators.torch_module import ModuleGenerator
from imgorigin.verification.inversion import InversionConfig, Inverter, image_key
from imgorigin.verification.retries import attempt_key, choose_retries


class Waves(nn.Module):
    """z [1] → 1×4×4 image of sines of z at slightly different frequencies: a loss with several basins in the
    prior's range, one of them the sample's own, so single attempts from random starts often end in another."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(3.0 + 0.6 * torch.rand(16, generator=g))
        self.c = nn.Parameter(6.28 * torch.rand(16, generator=g))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (0.45 * torch.sin(z.reshape(-1, 1) * self.w + self.c)).reshape(-1, 1, 4, 4)


def generator() -> ModuleGenerator:
    return ModuleGenerator(Waves(), (1,), id="waves", output_range="tanh")


CONFIG = InversionConfig(init="random", restarts=1, steps=60, lr=0.05, refine_steps=0, patience=60, retry_above=1e-6)


def samples(gen: ModuleGenerator, n: int = 40) -> tuple[torch.Tensor, list[str]]:
    images = gen.sample(n, seed=3)
    return images, [image_key(x) for x in images]


def test_retries_rescue_members_and_match_what_verify_computes():
    gen = generator()
    images, keys = samples(gen)
    config, scores, choice = choose_retries(gen, CONFIG, images, keys, max_retries=6)
    # single attempts strand many members; the rounds rescue most of them, at most max_retries rounds
    assert choice.failed[0] > 0.2 and choice.failed[config.retries] < 0.5 * choice.failed[0]
    assert 1 <= config.retries <= choice.rounds <= 6
    assert list(choice.failed) == sorted(choice.failed, reverse=True)  # the best over more attempts never worsens
    # the scores are exactly what the inverter's own retries give with the chosen count (same seeds per attempt)
    direct = Inverter(gen, config)(images, keys=keys).scores
    np.testing.assert_allclose(scores, direct, rtol=1e-5, atol=1e-9)
    assert attempt_key("k", 0) == "k" and attempt_key("k", 2) == "k:attempt2"


def test_calibrate_records_the_search_and_zero_turns_it_off():
    gen = generator()
    auto = calibrate(gen, 40, config=CONFIG, seed=3)
    assert auto.inversion.retries >= 1 and auto.retry_search["retries"] == auto.inversion.retries
    fixed = calibrate(gen, 40, config=CONFIG, seed=3, auto_retries=0)
    assert fixed.inversion.retries == 0 and fixed.retry_search is None
    # retried members reconstruct better: the calibration's upper tail comes down
    assert np.quantile(auto.scores, 0.75) < np.quantile(fixed.scores, 0.75)
