"""The score cache survives corrupt lines: a bad entry is ignored (the image is inverted again), never fatal."""

from __future__ import annotations

import json

from imgorigin.verification.generators import ModuleGenerator
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import ScoreCache
from tiny_models import LATENT, TinyGenerator


def test_corrupt_nan_negative_and_torn_lines_are_ignored_and_a_new_score_wins(tmp_path):
    gen = ModuleGenerator(TinyGenerator(), [LATENT], id="tiny")
    config = InversionConfig(steps=5)
    cache = ScoreCache(gen, config, tmp_path)
    cache.put("a" * 64, 1e-4)
    lines = [
        json.dumps({"sha256": "b" * 64, "score": "oops"}),
        '{"sha256": "' + "c" * 64 + '", "score": NaN}',
        json.dumps({"sha256": "d" * 64, "score": -1.0}),
        json.dumps({"sha256": "e" * 64, "score": True}),
        json.dumps({"score": 0.5}),
        "\xff\xfe not json",
        json.dumps({"sha256": "f" * 64, "score": 2e-3}),
        '{"sha256": "' + "g" * 64 + '", "sco',  # cut short by a kill
    ]
    with cache.path.open("a", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write("\n".join(lines))
    reread = ScoreCache(gen, config, tmp_path)
    assert reread.scores == {"a" * 64: 1e-4, "f" * 64: 2e-3}
    reread.put("b" * 64, 3e-4)  # the image behind the corrupt line, scored again
    assert ScoreCache(gen, config, tmp_path).get("b" * 64) == 3e-4
