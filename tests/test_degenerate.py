"""Flat images carry too little information for reconstruction to be evidence: inconclusive, never a member."""

from __future__ import annotations

import torch

from imgorigin.images import save_png
from imgorigin.verification import calibrate
from imgorigin.verification.generators import ModuleGenerator
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import Verifier, informative
from tiny_models import LATENT, TinyGenerator, real_like

FAST = InversionConfig(steps=60, restarts=2, patience=20, batch_size=16, search_candidates=4, prune_after=0)


def test_informative_rule_on_flat_and_structured_images():
    flat = torch.zeros(1, 16, 16)
    assert not informative(flat) and not informative(flat + 1)
    dots = flat.clone()
    dots[0, 3, 4] = 0.8  # 1 of 256 values differs: under the 1 % rule
    assert not informative(dots)
    dots[0, 5:8, 5:8] = 0.5  # 10 of 256
    assert informative(dots)
    assert all(informative(x) for x in real_like(8))


def test_black_and_white_images_are_inconclusive_even_where_the_model_reproduces_them(tmp_path):
    gen = ModuleGenerator(TinyGenerator(), [LATENT], id="tiny")
    cal = calibrate(gen, 20, config=FAST, learned_init=False)
    for name, value in (("black", 0.0), ("white", 1.0)):
        save_png(torch.full((1, 16, 16), value), tmp_path / f"{name}.png")
    save_png(gen.sample(1, seed=5)[0], tmp_path / "member.png")
    records = {r["path"].rsplit("/", 1)[-1]: r for r in Verifier(gen, cal).verify_paths(sorted(tmp_path.iterdir()))}
    for name in ("black.png", "white.png"):
        assert records[name]["verdict"] == "inconclusive" and not records[name]["belongs"]
        assert "too_little_information" in records[name]["reasons"]
    assert "too_little_information" not in records["member.png"]["reasons"]
