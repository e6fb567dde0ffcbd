"""Retries the calibration chooses itself: invert the model's own samples again until they stop improving.

A GAN member whose inversion ends in a wrong basin scores like a non-member, and a fraction of them that no
threshold can fix puts the α threshold among non-members. Fresh starts find most of those basins, but how many
attempts a model needs differs (zoo dcgan: 1 % of its own samples stuck after one attempt; a 64×64 RGB DCGAN:
a third). So the calibration measures it: the samples whose best distance stays above ``retry_above`` are
inverted again from fresh starts (seeded by key and attempt number, exactly as :class:`Inverter` retries), round
after round, until ``patience`` attempts in a row (counted over samples: one stuck sample gets that many rounds,
twenty stuck samples one) rescue none; the calibration keeps ``retries`` = the last round that rescued one, and
each sample's score is its best over attempts 0..retries — what ``verify`` computes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from imgorigin.verification.generators.base import Generator
from imgorigin.verification.inversion import InversionConfig, Inverter, attempt_key

#: Most retries a calibration chooses by default, and failed attempts in a row before it stops looking.
MAX_AUTO_RETRIES, AUTO_PATIENCE = 8, 10


@dataclass(frozen=True)
class RetryChoice:
    """What the search found: the retries chosen, the fraction of samples above ``retry_above`` after each
    attempt (``failed[k]``: after attempts 0..k), and the rounds run."""

    retries: int
    failed: tuple[float, ...]
    rounds: int

    def to_dict(self) -> dict:
        """Plain dict for JSON (stored in the calibration file)."""
        return {"retries": self.retries, "failed_after_attempt": list(self.failed), "rounds": self.rounds}


def choose_retries(
    generator: Generator,
    config: InversionConfig,
    images: torch.Tensor,
    keys: Sequence[str],
    *,
    max_retries: int = MAX_AUTO_RETRIES,
    patience: int = AUTO_PATIENCE,
    progress: bool = False,
) -> tuple[InversionConfig, np.ndarray, RetryChoice]:
    """Invert ``images`` (the model's own samples) with retry rounds as above; returns the config with the
    chosen ``retries`` (never fewer than ``config.retries``), each image's score under it, and the
    :class:`RetryChoice`."""
    single = dataclasses.replace(config, retries=0)
    inverter = Inverter(generator, single)
    history = [inverter(images, keys=list(keys), progress=progress).scores]  # best after attempts 0..k
    chosen, quiet = 0, 0
    for attempt in range(1, max(max_retries, config.retries) + 1):
        best = history[-1]
        failed = np.flatnonzero(best > config.retry_above)
        if attempt > config.retries and (failed.size == 0 or quiet >= patience):
            break
        new, rescued = best.copy(), False
        if failed.size:
            again = inverter(images[failed], keys=[attempt_key(keys[i], attempt) for i in failed], progress=progress)
            new[failed] = np.minimum(best[failed], again.scores)
            rescued = bool(np.any(again.scores <= config.retry_above))
        history.append(new)
        if attempt <= config.retries or rescued:
            chosen, quiet = attempt, 0
        else:
            quiet += failed.size
    choice = RetryChoice(chosen, tuple(float(np.mean(h > config.retry_above)) for h in history), len(history) - 1)
    return dataclasses.replace(config, retries=chosen), history[chosen], choice
