"""The fine-detail check: low-pass processing the file does not show makes a verdict inconclusive."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from imgorigin import zoo
from imgorigin.cli import app as cli
from imgorigin.errors import UsageError
from imgorigin.images import save_png
from imgorigin.verification import detail
from imgorigin.verification.detail import DetailReference, upper_band_fraction
from imgorigin.verification.generators.torch_module import ModuleGenerator
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import Verifier, calibrate

FAST = InversionConfig(steps=60, restarts=2, patience=20, batch_size=32, search_candidates=4, prune_after=0)


class Textured(torch.nn.Module):
    """z [B, 6] → [B, 1, 16, 16]: smooth shapes plus a fine checker texture, like a sharp GAN's images."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("basis", torch.randn(6, 1, 4, 4, generator=g))
        self.register_buffer("texture", torch.randn(6, 1, 16, 16, generator=g))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        coarse = torch.einsum("bk,kchw->bchw", z, self.basis)
        coarse = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
        return torch.tanh(0.4 * coarse + 0.15 * torch.einsum("bk,kchw->bchw", z, self.texture))


@pytest.fixture(scope="module")
def generator() -> ModuleGenerator:
    return ModuleGenerator(Textured(), [6], output_range="tanh", id="textured")


def _resized_back(image: torch.Tensor) -> torch.Tensor:
    """Resize 0.5x and back with bicubic, as a platform would, at 8 bits."""
    codes = (image[0].numpy() * 255).round().astype(np.uint8)
    size = codes.shape[::-1]
    half = (size[0] // 2, size[1] // 2)
    pil = Image.fromarray(codes).resize(half, Image.Resampling.BICUBIC).resize(size, Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255)[None]


def test_upper_band_fraction_of_known_spectra():
    g = torch.Generator().manual_seed(0)
    white = torch.rand(64, 1, 32, 32, generator=g)
    # white noise spreads evenly: the share of the 32x32 frequency grid with max(|fy|, |fx|) > 1/4
    assert upper_band_fraction(white).mean() == pytest.approx(1 - (17 / 32) ** 2, abs=0.01)
    smooth = torch.nn.functional.interpolate(white[:, :, ::4, ::4], size=(32, 32), mode="bilinear")
    assert upper_band_fraction(smooth).max() < 0.05
    assert upper_band_fraction(torch.full((2, 3, 8, 8), 0.5)).tolist() == [0.0, 0.0]  # flat: no energy at all
    rgb = torch.cat([white[:1], smooth[:1], white[1:2]], dim=1)  # channels are averaged
    assert upper_band_fraction(rgb)[0] == pytest.approx(
        (upper_band_fraction(white[:1])[0] + upper_band_fraction(smooth[:1])[0] + upper_band_fraction(white[1:2])[0])
        / 3
    )


def test_own_images_pass_resized_ones_are_flagged(generator, tmp_path):
    reference = DetailReference.from_generator(generator, 300, cache_dir=tmp_path)
    fresh = (generator.sample(200, seed=5) * 255).round() / 255
    p_own = np.array([reference.p_value(x) for x in fresh])
    assert np.mean(p_own <= 1e-3) <= 0.01
    p_resized = np.array([reference.p_value(_resized_back(x)) for x in fresh[:40]])
    assert np.mean(p_resized <= 1e-3) >= 0.95
    # once per process: the same object; on disk by weights and n: read back in a new process (the in-process
    # memo cleared here), and a corrupt file is sampled again
    assert DetailReference.from_generator(generator, 300) is reference
    (cached,) = (tmp_path / "detail").iterdir()
    detail._REFERENCES.clear()
    assert np.array_equal(DetailReference.from_generator(generator, 300, cache_dir=tmp_path).values, reference.values)
    detail._REFERENCES.clear()
    cached.write_bytes(b"not an array")
    assert np.array_equal(DetailReference.from_generator(generator, 300, cache_dir=tmp_path).values, reference.values)
    assert DetailReference.from_generator(generator, 50, cache_dir=tmp_path).values.size == 50


def test_verifier_calls_resized_members_inconclusive(generator, tmp_path):
    calibration = calibrate(generator, 30, config=FAST, seed=1, learned_init=False)
    members = (generator.sample(6, seed=7) * 255).round() / 255
    for i, image in enumerate(members):
        save_png(image, tmp_path / f"m{i}.png")
        save_png(_resized_back(image), tmp_path / f"r{i}.png")
    verifier = Verifier(generator, calibration, cache_dir=tmp_path / "cache")
    records = {r["path"].split("/")[-1]: r for r in verifier.verify_paths([tmp_path])}
    pristine = [records[f"m{i}.png"] for i in range(6)]
    resized = [records[f"r{i}.png"] for i in range(6)]
    assert sum(r["verdict"] == "member" for r in pristine) >= 5
    assert all(r["p_value_detail"] > 1e-3 and "smoother_than_model" not in r["reasons"] for r in pristine)
    assert all(r["verdict"] == "inconclusive" and "smoother_than_model" in r["reasons"] for r in resized)
    assert verifier.identity()["detail"] == {"statistic": "upper-band-energy/1", "alpha": 1e-3, "samples": 500}
    off = Verifier(generator, calibration, detail_alpha=None)
    plain = off.verify_tensors(torch.stack([_resized_back(x) for x in members]))
    assert all(r["p_value_detail"] is None and "smoother_than_model" not in r["reasons"] for r in plain)
    assert "detail" not in off.identity()
    for bad in ({"detail_alpha": 1.0}, {"detail_alpha": 0.0}, {"detail_samples": 1}):
        with pytest.raises(UsageError, match="detail_"):
            Verifier(generator, calibration, **bad)


def test_cli_detail_alpha_option(tmp_path):
    save_png(_resized_back(zoo.sample("dcgan", 1, seed=3)[0]), tmp_path / "up.png")  # a member, resized and back
    runner = CliRunner()
    args = ["verify", "zoo:dcgan", str(tmp_path / "up.png"), "--cache-dir", str(tmp_path / "c"), "--device", "cpu"]
    on = runner.invoke(cli, [*args, "-o", str(tmp_path / "on.jsonl")])
    off = runner.invoke(cli, [*args, "--detail-alpha", "0", "-o", str(tmp_path / "off.jsonl")])
    assert on.exit_code == 0 and off.exit_code == 0, on.output + off.output
    (record_on,) = map(json.loads, (tmp_path / "on.jsonl").read_text().splitlines()[1:])
    (record_off,) = map(json.loads, (tmp_path / "off.jsonl").read_text().splitlines()[1:])
    assert record_on["verdict"] == "inconclusive" and "smoother_than_model" in record_on["reasons"]
    assert record_off["verdict"] == "non-member" and record_off["p_value_detail"] is None
    bad = runner.invoke(cli, [*args, "--detail-alpha", "2"])
    assert bad.exit_code == 2 and "--detail-alpha" in bad.output


def test_decide_withholds_a_verdict_only_for_known_reasons(generator):
    from imgorigin.verification.verifier import decide

    calibration = calibrate(generator, 10, config=FAST, seed=2, learned_init=False)
    low = float(calibration.scores[0])
    assert decide(low, calibration, 0.05)["verdict"] == "member"
    held = decide(low, calibration, 0.05, withheld=["smoother_than_model", "processing_not_calibrated"])
    assert held["verdict"] == "inconclusive" and held["reasons"][-2:] == [
        "smoother_than_model",
        "processing_not_calibrated",
    ]
    with pytest.raises(ValueError, match="withhold"):
        decide(low, calibration, 0.05, withheld=["resized"])
