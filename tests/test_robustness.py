"""Processing detection (JPEG quality, WebP kind, size), the processing rule of verification, and the robustness
benchmark on tiny generators."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from imgorigin.benchmarks import robustness
from imgorigin.images import estimate_jpeg_quality, load_image, save_png
from imgorigin.verification import calibrate
from imgorigin.verification.calibration import Calibration
from imgorigin.verification.generators import ModuleGenerator
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import Verifier, covers, processing_family
from tiny_models import LATENT, TinyGenerator, real_like

FAST = InversionConfig(steps=60, restarts=2, patience=20, batch_size=16, search_candidates=4, prune_after=0)


def _noise_image(seed: int = 0, mode: str = "L") -> Image.Image:
    codes = (np.random.default_rng(seed).random((24, 24)) * 255).astype(np.uint8)
    image = Image.fromarray(codes)
    return image.convert(mode) if mode != "L" else image


@pytest.mark.parametrize("quality", [98, 95, 90, 80, 75, 60, 50, 30, 10])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg_quality_is_estimated_from_the_quantisation_tables(tmp_path, quality, mode):
    path = tmp_path / "a.jpg"
    _noise_image(quality, mode).save(path, quality=quality)
    loaded = load_image(path, 1, (24, 24))
    assert abs(loaded.processing["jpeg_quality"] - quality) <= 2
    assert loaded.processing["lossy"] and loaded.processing["native_size"]
    assert "recompressed_jpeg" in loaded.reasons
    with Image.open(path) as image:
        assert estimate_jpeg_quality(image.quantization) == (loaded.processing["jpeg_quality"], True)


def test_jpeg_quality_of_a_non_ijg_table_is_the_nearest_and_not_exact():
    with Image.open(_saved_jpeg(75)) as image:
        table = [min(255, v + 1) for v in image.quantization[0]]
    quality, exact = estimate_jpeg_quality({0: table})
    assert not exact and 70 <= quality <= 76
    assert estimate_jpeg_quality({}) == (None, False)


def _saved_jpeg(quality: int):
    import io

    buffer = io.BytesIO()
    _noise_image().save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return buffer


def test_webp_kind_png_and_size_are_detected(tmp_path):
    image = _noise_image()
    image.save(tmp_path / "lossy.webp", quality=80)
    image.save(tmp_path / "lossless.webp", lossless=True)
    image.save(tmp_path / "a.png")
    image.resize((48, 48)).save(tmp_path / "big.png")
    lossy = load_image(tmp_path / "lossy.webp", 1, (24, 24))
    assert lossy.processing == {"format": "WEBP", "lossy": True, "webp": "lossy", "native_size": True}
    assert "lossy_webp" in lossy.reasons
    lossless = load_image(tmp_path / "lossless.webp", 1, (24, 24))
    assert lossless.processing["webp"] == "lossless" and not lossless.processing["lossy"]
    assert "lossy_webp" not in lossless.reasons
    assert load_image(tmp_path / "a.png", 1).processing == {"format": "PNG", "lossy": False}
    big = load_image(tmp_path / "big.png", 1, (24, 24))
    assert big.processing["native_size"] is False and "resized" in big.reasons
    families = [processing_family(x.processing) for x in (lossy, lossless, big)]
    assert families == ["webp:lossy", None, "resized"]


def test_coverage_of_processing_families():
    assert covers(None, None) and not covers(None, "jpeg:90") and not covers("jpeg:90", None)
    assert covers("jpeg:75", "jpeg:77") and not covers("jpeg:75", "jpeg:78") and not covers("jpeg:75", "resized")
    assert covers("webp:lossy", "webp:lossy") and not covers("resized", "webp:lossy")


@pytest.fixture(scope="module")
def tiny():
    gen = ModuleGenerator(TinyGenerator(), [LATENT], id="tiny")
    return gen, calibrate(gen, 20, config=FAST, learned_init=False)


def test_a_jpeg_member_against_a_pristine_calibration_is_inconclusive(tiny, tmp_path):
    gen, cal = tiny
    member = gen.sample(1, seed=7)[0]
    save_png(member, tmp_path / "member.png")
    codes = (member[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(codes).save(tmp_path / "member.jpg", quality=90)
    Image.fromarray(codes).resize((32, 32)).save(tmp_path / "member-big.png")
    records = {r["path"].rsplit("/", 1)[-1]: r for r in Verifier(gen, cal).verify_paths([tmp_path])}
    assert records["member.png"]["verdict"] == "member"
    assert records["member.png"]["processing"] == {
        "format": "PNG",
        "lossy": False,
        "native_size": True,
        "calibration": "pristine",
    }
    for name in ("member.jpg", "member-big.png"):
        record = records[name]
        assert record["verdict"] == "inconclusive" and not record["belongs"], name
        assert "processing_not_calibrated" in record["reasons"]
        assert record["p_value"] is not None  # the pristine p-value is still reported
    assert records["member.jpg"]["processing"]["jpeg_quality"] == 90
    assert "recompressed_jpeg" in records["member.jpg"]["reasons"]


def test_a_calibration_on_processed_samples_decides_images_processed_the_same_way(tiny, tmp_path):
    gen, cal = tiny
    own = tmp_path / "own"
    robustness.write_set(robustness.to_codes(gen.sample(20, seed=11)), robustness.Perturbation("jpeg", 75), own, 0)
    jpeg_cal = calibrate(gen, 20, config=FAST, sample_dir=[own], learned_init=False)
    jpeg_cal.perturbation = "jpeg:75"
    saved = Calibration.load(jpeg_cal.save(tmp_path / "jpeg.cal.json"))
    assert saved.perturbation == "jpeg:75" and saved.digest() == jpeg_cal.digest()
    assert "perturbation" not in json.dumps(cal.digest())  # pristine digests are what they were
    suspects = tmp_path / "suspects"
    robustness.write_set(robustness.to_codes(gen.sample(2, seed=12)), robustness.Perturbation("jpeg", 75), suspects, 0)
    robustness.write_set(
        robustness.to_codes(gen.sample(1, seed=13)), robustness.Perturbation("jpeg", 50), suspects / "q50", 0
    )
    verifier = Verifier(gen, cal, processed_calibrations=[saved])
    records = list(verifier.verify_paths([suspects]))
    at_75 = [r for r in records if "q50" not in r["path"]]
    assert all(r["processing"]["calibration"] == "jpeg:75" for r in at_75)
    assert all("processing_not_calibrated" not in r["reasons"] for r in at_75)
    assert all(r["threshold"] == saved.threshold(0.05) for r in at_75)
    (q50,) = [r for r in records if "q50" in r["path"]]
    assert q50["verdict"] == "inconclusive" and "processing_not_calibrated" in q50["reasons"]
    assert verifier.identity()["processed_calibrations"] == [saved.digest()]
    assert "processed_calibrations" not in Verifier(gen, cal).identity()


def test_perturbations_write_real_files(tmp_path):
    codes = robustness.to_codes(real_like(1, size=16))[0]
    for point in robustness.GRID:
        path = robustness.perturb(codes, point, tmp_path / point.name.replace(":", "-"), seed=1)
        loaded = load_image(path, 1, (16, 16))
        assert (processing_family(loaded.processing) is not None) == point.detectable, point.name
    assert robustness.parse_grid("none,jpeg:90,blur:1") == [
        robustness.Perturbation("none"),
        robustness.Perturbation("jpeg", 90.0),
        robustness.Perturbation("blur", 1.0),
    ]
    with pytest.raises(ValueError):
        robustness.parse_grid("sepia:3")


def test_benchmark_run_on_tiny_generators(tmp_path):
    gens = {
        "a": ModuleGenerator(TinyGenerator(seed=0), [LATENT], id="a"),
        "b": ModuleGenerator(TinyGenerator(seed=1), [LATENT], id="b"),
    }
    cals = {name: calibrate(gen, 12, config=FAST, seed=99, learned_init=False) for name, gen in gens.items()}
    grid = robustness.parse_grid("none,jpeg:75,resize:0.5,scaled:2")
    results = robustness.run(
        ["a"],
        tmp_path,
        grid=grid,
        others=["b"],
        n_members=4,
        n_real=4,
        n_other=3,
        n_cal=4,
        load_model=gens.__getitem__,
        load_calibration=cals.__getitem__,
        sample=lambda name, n, seed: gens[name].sample(n, seed=seed),
        real_images=real_like(4, seed=3),
        log=lambda message: None,
    )
    rows = {row["name"]: row for row in results["models"]["a"]["rows"]}
    assert list(rows) == ["none", "jpeg:75", "resize:0.5", "scaled:2"]
    for row in rows.values():
        assert row["n_members"] == 4 and row["n_non_members"] == 7 and row["images"] == 11
        assert 0 <= row["auroc"] <= 1
        for key in ("members_accepted", "members_inconclusive", "non_members_accepted", "non_members_inconclusive"):
            assert 0 <= row["rule"][key] <= 1
        assert 0 <= row["rule"]["false_member_rate_among_verdicts"] <= 1
    for name in ("jpeg:75", "scaled:2"):  # the file shows it: the pristine calibration gives no verdict
        assert rows[name]["rule"]["members_inconclusive"] == 1 and rows[name]["rule"]["non_members_inconclusive"] == 1
    assert "matched" in rows["jpeg:75"] and "matched" not in rows["resize:0.5"]
    # resized down and back, the tiny model's noise-like members lose their fine detail: flagged, no verdict
    assert rows["resize:0.5"]["smoother"]["members"] == 1 and rows["none"]["smoother"]["members"] == 0
    resized = rows["resize:0.5"]["rule"]
    assert resized["members_inconclusive"] == 1 and resized["members_rejected"] == 0
    assert rows["none"]["families"] == ["None"] and rows["jpeg:75"]["families"] == ["jpeg:75"]
    assert json.loads((tmp_path / "results.json").read_text())["models"]["a"]["rows"][1]["name"] == "jpeg:75"
    assert "| jpeg:75 | jpeg:75 | 0% / 0% |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "a.png").stat().st_size > 0
