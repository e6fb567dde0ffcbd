"""Backbones: shipped EfficientNet-Lite0 weights, CLIP/DINOv2 block features, spectrum, registry, cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from imgorigin.attribution.features import BackboneError, create_backbone, list_backbones
from imgorigin.attribution.features.efficientnet import EfficientNetLite0, shipped_weights_path


@pytest.fixture(scope="module")
def effnet():
    return create_backbone("efficientnet-lite0")


def test_shipped_weights_load_strictly_into_the_architecture():
    state = torch.load(shipped_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    assert sorted(model.state_dict()) == sorted(state)  # same names; strict loading also checks shapes
    model.load_state_dict(state, strict=True)
    assert len(model._blocks) == 16


def test_shipped_weights_classify_grace_hopper(effnet):
    cbook = pytest.importorskip("matplotlib.cbook")
    from imgorigin.images import load_image

    try:
        path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    except (OSError, ValueError):
        pytest.skip("matplotlib's sample photo is not installed")
    photo = load_image(path, channels=3).tensor()
    with torch.inference_mode():
        probs = effnet.model(effnet.preprocess(photo)[None]).softmax(-1)[0]
    top5 = probs.topk(5).indices.tolist()
    # measured: military uniform 652 (p 0.39), bulletproof vest 465, suit 834, Windsor tie 906, bow tie 457
    assert top5[0] == 652
    assert probs[652] > 0.3
    assert set(top5) <= {652, 465, 834, 906, 457, 400, 667}  # uniform, vest, suit, ties, gown, mortarboard


def test_efficientnet_layers_aliases_and_shapes(effnet):
    assert effnet.layers == (*[str(i) for i in range(16)], "head")
    assert effnet.resolve_layer("stage5") == effnet.default_layer == "10"
    assert effnet.resolve_layer(15) == effnet.resolve_layer("stage7") == "15"
    assert effnet.feature_dim == 112
    with pytest.raises(ValueError, match="no layer"):
        effnet.resolve_layer("stage9")
    grey = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(0))
    feats = effnet.embed_layers(grey, ["stage1", 7, "head"], batch_size=1)
    assert {k: v.shape for k, v in feats.items()} == {"0": (2, 16), "7": (2, 80), "head": (2, 1280)}
    assert all(v.dtype == np.float32 for v in feats.values())
    # grey input = the same grey level on the three channels; batching does not change the result
    np.testing.assert_allclose(effnet.embed(grey.expand(-1, 3, -1, -1), "7", batch_size=2), feats["7"], atol=1e-5)


def _tiny_vit(kind: str, directory: Path, with_processor: bool = False) -> torch.nn.Module:
    """Save a random tiny CLIP or DINOv2 (3 blocks, 32x32 input) under directory and return it."""
    import transformers

    torch.manual_seed(0)
    sizes = dict(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8
    )
    if kind == "clip":
        model = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**sizes))
    else:
        model = transformers.Dinov2Model(transformers.Dinov2Config(**sizes))
    model.eval().save_pretrained(directory)
    if with_processor:
        (directory / "preprocessor_config.json").write_text(
            json.dumps(
                {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.5, 0.5, 0.5], "crop_size": {"height": 16, "width": 16}}
            )
        )
    return model


@pytest.mark.parametrize("kind", ["clip", "dinov2"])
def test_vit_features_are_the_cls_token_of_the_chosen_block(kind, tmp_path):
    model = _tiny_vit(kind, tmp_path)
    backbone = create_backbone(f"{kind}:{tmp_path}")
    assert backbone.layers == ("1", "2", "3") and backbone.default_layer == "2" and backbone.feature_dim == 32
    assert backbone.size == (32, 32)
    images = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    feats = backbone.embed_layers(images, [1, 2, 3], batch_size=2)
    with torch.no_grad():
        hidden = model(pixel_values=backbone.preprocess(images), output_hidden_states=True).hidden_states
    for k in (1, 2, 3):
        assert feats[str(k)].shape == (3, 32)
        np.testing.assert_allclose(feats[str(k)], hidden[k][:, 0].numpy(), atol=1e-5)
    # block choice matters: blocks 1 and 3 differ by over a third of the features' size (measured 0.34, 0.62)
    assert np.abs(feats["1"] - feats["3"]).mean() > 0.3 * np.abs(feats["1"]).mean()
    mean = (0.48145466, 0.4578275, 0.40821073) if kind == "clip" else (0.485, 0.456, 0.406)
    assert backbone.mean == pytest.approx(mean)


def test_vit_reads_its_preprocessor_config(tmp_path):
    _tiny_vit("clip", tmp_path, with_processor=True)
    backbone = create_backbone(f"clip:{tmp_path}")
    assert backbone.size == (16, 16) and backbone.mean == (0.1, 0.2, 0.3)
    white = backbone.preprocess(torch.ones(1, 50, 50))
    assert white.shape == (3, 16, 16)
    np.testing.assert_allclose(white[:, 0, 0].numpy(), [1.8, 1.6, 1.4], rtol=1e-6)  # (1 - mean) / 0.5


def test_missing_vit_says_how_to_provide_one(tmp_path):
    with pytest.raises(BackboneError, match="huggingface-cli download"):
        create_backbone(f"clip:{tmp_path / 'absent'}")
    with pytest.raises(BackboneError, match="clip:DIR"):
        create_backbone("clip")


def test_spectrum_sees_nearest_neighbour_upsampling():
    spectrum = create_backbone("spectrum")
    assert spectrum.layer_dims == {"radial": 16, "grid": 1024} and spectrum.channels == 1
    gen = torch.Generator().manual_seed(0)
    smooth = torch.rand(4, 1, 64, 64, generator=gen)
    # nearest-neighbour 2x up-sampling repeats pixels, a [1, 1] box filter with a zero at the Nyquist
    # frequency: the outer rings of its spectrum drop (measured ~1.4 against ~2.6 for white noise)
    blocky = torch.rand(4, 1, 32, 32, generator=gen).repeat_interleave(2, -1).repeat_interleave(2, -2)
    feats = spectrum.embed_layers(torch.cat([smooth, blocky]), ["radial", "grid"])
    assert feats["grid"].shape == (8, 1024)
    outer = feats["radial"][:, 13:].mean(axis=1)
    assert outer[4:].max() < 1.7 < 2.3 < outer[:4].min()
    sizes = [torch.rand(3, 300, 500, generator=gen), torch.rand(1, 20, 17, generator=gen)]
    assert spectrum.embed(sizes, "radial").shape == (2, 16)


def test_registry_names_and_errors():
    names = {"efficientnet-lite0", "spectrum", "clip:SOURCE", "dinov2:SOURCE", "clip-vit-b16", "onnx:SOURCE"}
    assert set(list_backbones()) == names
    with pytest.raises(BackboneError, match="unknown backbone"):
        create_backbone("resnet50")
    with pytest.raises(BackboneError, match="takes no"):
        create_backbone("spectrum:x")


@pytest.fixture
def image_folder(tmp_path):
    """Five distinct PNGs (one a copy of another under a second name) and one corrupt file."""
    from imgorigin.images import save_png

    folder = tmp_path / "images"
    folder.mkdir()
    gen = torch.Generator().manual_seed(3)
    for i in range(4):
        save_png(torch.rand(1, 24 + 4 * i, 24, generator=gen), folder / f"img{i}.png")
    (folder / "copy.png").write_bytes((folder / "img0.png").read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def _count_calls(backbone, monkeypatch) -> list[int]:
    """Record the batch size of every forward pass of the backbone."""
    calls: list[int] = []
    original = backbone._features

    def counted(batch, layers):
        calls.append(len(batch))
        return original(batch, layers)

    monkeypatch.setattr(backbone, "_features", counted)
    return calls


def test_cache_second_run_never_calls_the_backbone(image_folder, tmp_path, monkeypatch):
    from imgorigin.attribution.features import embed_paths
    from imgorigin.images import find_images, load_image

    spectrum = create_backbone("spectrum")
    calls = _count_calls(spectrum, monkeypatch)
    paths = find_images([image_folder])
    assert [p.name for p in paths] == ["broken.png", "copy.png", "img0.png", "img1.png", "img2.png", "img3.png"]
    first = embed_paths(spectrum, paths, "radial", cache_dir=tmp_path / "cache", batch_size=2, progress=False)
    assert calls == [1, 2, 1]  # broken.png fails to load, img0.png is the same bytes as copy.png
    assert first.paths == [str(p) for p in paths[1:]]
    assert [(Path(p).name, "PNG" in m) for p, m in first.errors] == [("broken.png", True)]
    expected = spectrum.embed([load_image(p, 1).tensor() for p in paths[1:]], "radial")
    np.testing.assert_allclose(first.features, expected, rtol=1e-6)

    calls.clear()
    second = embed_paths(spectrum, paths, "radial", cache_dir=tmp_path / "cache", progress=False)
    assert calls == []
    assert np.array_equal(second.features, first.features) and second.paths == first.paths
    assert second.errors == first.errors  # errors are not cached: the file is tried again

    shards = list((tmp_path / "cache" / "features").glob("*/*.safetensors"))
    assert len(shards) == 1
    key = json.loads((shards[0].parent / "key.json").read_text())
    assert key["backbone_id"] == "spectrum-v1" and key["layer"] == "radial" and key["dim"] == 16


def test_cache_keys_separate_layers_and_embed_several_layers_in_one_pass(image_folder, tmp_path, monkeypatch):
    from imgorigin.attribution.features import embed_paths, embed_paths_layers

    spectrum = create_backbone("spectrum")
    calls = _count_calls(spectrum, monkeypatch)
    paths = sorted(image_folder.glob("img*.png"))
    embed_paths(spectrum, paths[:2], "radial", cache_dir=tmp_path, progress=False)
    assert calls == [2]
    both = embed_paths_layers(spectrum, paths, ["grid", "radial"], cache_dir=tmp_path, progress=False)
    assert calls == [2, 4]  # grid was never cached: all four images, both layers in that one pass
    assert {k: v.shape for k, v in both.features.items()} == {"grid": (4, 1024), "radial": (4, 16)}
    from safetensors.numpy import load_file

    rows = sorted(len(load_file(f)["sha256"]) for f in tmp_path.glob("features/*/*.safetensors"))
    assert rows == [2, 2, 4]  # radial: the first 2, then only the 2 new rows; grid: 4
    calls.clear()
    monkeypatch.setenv("IMGORIGIN_CACHE", str(tmp_path))
    again = embed_paths(spectrum, paths, "grid", progress=False)  # the default cache dir follows the variable
    assert calls == [] and np.array_equal(again.features, both.features["grid"])
