"""The shipped model zoo: weights load and match their cards, sampling is deterministic, data and FD are right,
training runs from its own modules and loading never imports them."""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
import struct
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import imgorigin.zoo as zoo
from imgorigin.images import clipped_fraction, quantize_8bit
from imgorigin.runtime import sha256_file
from imgorigin.verification import load_generator
from imgorigin.verification.generators import Generator, ModelSpecError
from imgorigin.zoo import data

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _tool(name: str) -> ModuleType:
    """A module of the checkout's tools/ folder (maintainer scripts, not part of the package)."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


quality = _tool("zoo_quality")

MODELS = [
    "dcgan",
    "dcgan-twin",
    "wgangp",
    "vae",
    "ddpm",
    "ldm",
    "ddpm-one-step",
    "dcgan-rgb",
    "vae-rgb",
    "ldm-rgb",
    "ldm-rgb-strong",
    "ldm-rgb-strong-b",
]
#: Documented latent shapes (part of the interface, like the names).
LATENT_SHAPES = {
    "dcgan": (64,),
    "dcgan-twin": (64,),
    "wgangp": (64,),
    "vae": (16,),
    "ddpm": (1, 28, 28),
    "ldm": (4, 7, 7),
    "ddpm-one-step": (1, 28, 28),
    "vae-rgb": (64,),
    "ldm-rgb": (4, 8, 8),
    "ldm-rgb-strong": (4, 32, 32),
    "ldm-rgb-strong-b": (4, 32, 32),
    "dcgan-rgb": (100,),
}
#: Image shapes: the colour zoo's RGB (64×64 for the GAN, 32×32 for the others), the rest Fashion-MNIST's 28×28.
IMAGE_SHAPES = {
    name: (3, 64, 64) if name == "dcgan-rgb" else (3, 32, 32) if "rgb" in name else (1, 28, 28) for name in MODELS
}
HAS_ENCODER = {"vae", "ldm", "ddpm", "vae-rgb", "ldm-rgb", "ldm-rgb-strong", "ldm-rgb-strong-b"}  # ddpm: DDIM inversion


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny batches run fastest on one thread (and do not stall on a machine shared with other jobs)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def generators() -> dict[str, Generator]:
    return {name: zoo.load(name) for name in MODELS}


def test_list_models_names_are_the_interface():
    assert zoo.list_models() == MODELS


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelSpecError, match="unknown zoo model"):
        zoo.load("stylegan")


@pytest.mark.parametrize("name", MODELS)
def test_model_loads_with_documented_latent_and_decodes_to_unit_range(name, generators):
    gen = generators[name]
    assert isinstance(gen, Generator)
    assert gen.latent_shape == LATENT_SHAPES[name]
    assert gen.has_encoder == (name in HAS_ENCODER)
    card = zoo.model_card(name)
    assert tuple(card["generator"]["latent_shape"]) == LATENT_SHAPES[name]
    assert card["generator"]["image_shape"] == list(IMAGE_SHAPES[name])
    z = gen.sample_latents(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = gen.decode(z)
    assert x.shape == (2, *IMAGE_SHAPES[name])
    assert x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x.std()) > 0.01  # not a constant image
    assert card["generator"]["weight_hash"] == gen.weight_hash()


@pytest.mark.parametrize("name", HAS_ENCODER)
def test_encoder_starts_closer_to_own_images_than_a_random_latent(name, generators):
    gen = generators[name]
    images = quantize_8bit(gen.sample(3, seed=0))
    with torch.no_grad():
        z = gen.encode(images)
        start = (gen.decode(z) - images).pow(2).mean()
        random = (gen.decode(gen.sample_latents(3, torch.Generator().manual_seed(1))) - images).pow(2).mean()
    assert z.shape == (3, *LATENT_SHAPES[name])
    # measured: ddpm (10-step DDIM inversion) 0.47 of the random start, vae and ldm below 0.02
    assert float(start) < 0.6 * float(random)


@pytest.mark.parametrize("name", MODELS)
def test_sampling_is_deterministic_per_seed(name):
    a = zoo.sample(name, 3, seed=7)
    b = zoo.sample(name, 3, seed=7)
    c = zoo.sample(name, 3, seed=8)
    assert a.shape == (3, *IMAGE_SHAPES[name])
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", MODELS)
def test_weight_files_match_card_sha256(name):
    card = zoo.model_card(name)
    files = card["weights"]["files"]
    assert [f["path"] for f in files] == zoo.get_recipe(name).weight_files()
    for f in files:
        path = zoo.weights_dir() / f["path"]
        assert path.stat().st_size == f["bytes"]
        assert sha256_file(path) == f["sha256"], f"{path} does not match the model card"
        assert path.suffix == ".safetensors"


@pytest.mark.parametrize("name", MODELS)
def test_card_documents_training_and_quality(name):
    card = zoo.model_card(name)
    t = card["training"]["training"]
    assert card["seed"] == zoo.get_recipe(name).config.seed
    assert t["parameters"] == card["generator"]["parameters"] > 0
    assert t["steps"] > 0 and t["seconds"] > 0
    assert "device" in t
    if name in ("ddpm", "ldm"):
        assert card["sampling"]["num_inference_steps"] == zoo.get_recipe(name).config.num_inference_steps
    q = card["quality"]
    if q["frechet_distance"] is not None:  # FD is measured last, with the EfficientNet-Lite0 backbone
        assert q["frechet_distance"] >= 0 and q["n_samples"] >= 2000 and q["n_reference"] >= 2000


def test_shipped_size_budget():
    # 32 MiB: the Fashion-MNIST zoo and the colour zoo (float16 weights), with the shipped data subset
    files = [p for p in zoo.weights_dir().rglob("*") if p.is_file()]
    files += [p for p in (zoo.weights_dir().parent / "data").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 32 * 1024 * 1024


def test_diffusers_folders_load_with_diffusers():
    from diffusers import AutoencoderKL, DDIMPipeline

    pipe = DDIMPipeline.from_pretrained(zoo.weights_dir() / "ddpm")
    assert pipe.unet.config.sample_size == 28
    vae = AutoencoderKL.from_pretrained(zoo.weights_dir() / "ldm" / "vae")
    assert vae.config.scaling_factor != 1.0  # set from the training latents' std


# -- data ----------------------------------------------------------------------------------------------
def test_shipped_subset_loads():
    images, labels, indices = data.load_subset()
    assert images.shape == (200, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels, minlength=10).tolist() == [20] * 10
    assert len(set(indices.tolist())) == 200 and indices.max() < 10000
    x = data.subset_images()
    assert x.shape == (200, 1, 28, 28) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_subset_matches_the_test_split_when_installed():
    if not data.is_available():
        pytest.skip("dataset-fashion-mnist not installed")
    images, labels = data.load_split("test")
    sub, sub_labels, idx = data.load_subset()
    assert images.shape == (10000, 28, 28)
    np.testing.assert_array_equal(images[idx], sub)
    np.testing.assert_array_equal(labels[idx], sub_labels)


def test_missing_dataset_error_says_how_to_install(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_split("train", root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        data.load_split("validation", root=tmp_path)


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", 2, 3, 4) + arr.tobytes())
    np.testing.assert_array_equal(data.read_idx(path), arr)
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        data.read_idx(bad)


# -- training ------------------------------------------------------------------------------------------
# The GANs are left out: re-estimating BatchNorm after training takes seconds whatever max_steps is.
@pytest.mark.parametrize("name", ["vae", "ddpm", "ldm"])
def test_train_smoke_two_steps(name, tmp_path):
    images = data.subset_images()[:16]
    logs: list[str] = []
    stats = zoo.train(name, tmp_path, device="cpu", images=images, max_steps=2, log=logs.append)
    assert stats["steps"] == 2 and logs
    assert (tmp_path / name / "training.json").is_file()
    gen = zoo.load(name, weights=tmp_path)
    assert gen.decode(gen.sample_latents(1)).shape == (1, 1, 28, 28)
    # the trained weights differ from the shipped ones
    assert gen.weight_hash() != zoo.model_card(name)["generator"]["weight_hash"]


def test_colour_recipes_train_and_the_second_strong_model_reuses_the_first_autoencoder(tmp_path):
    from imgorigin.errors import ImgoriginError

    images = torch.rand((16, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ImgoriginError, match="train 'ldm-rgb-strong' into the same folder first"):
        zoo.train("ldm-rgb-strong-b", tmp_path, device="cpu", images=images, max_steps=2, log=lambda _: None)
    for name in ("vae-rgb", "ldm-rgb-strong", "ldm-rgb-strong-b"):
        zoo.train(name, tmp_path, device="cpu", images=images, max_steps=2, log=lambda _: None)
        gen = zoo.load(name, weights=tmp_path)
        assert gen.decode(gen.sample_latents(1)).shape == (1, 3, 32, 32) and gen.has_encoder
    a, b = zoo.load("ldm-rgb-strong", weights=tmp_path), zoo.load("ldm-rgb-strong-b", weights=tmp_path)
    files = [
        tmp_path / n / "vae" / "diffusion_pytorch_model.safetensors" for n in ("ldm-rgb-strong", "ldm-rgb-strong-b")
    ]
    assert sha256_file(files[0]) == sha256_file(files[1])  # the same autoencoder, float16 on disk
    assert a.scaling_factor == b.scaling_factor and a.weight_hash() != b.weight_hash()  # another latent UNet
    record = json.loads((tmp_path / "ldm-rgb-strong-b" / "training.json").read_text())["training"]
    assert record["autoencoder"]["from"] == "ldm-rgb-strong" and record["autoencoder"]["steps"] == 2


def test_one_step_student_learns_from_its_teacher_in_two_steps(tmp_path):
    stats = zoo.train("ddpm-one-step", tmp_path, device="cpu", max_steps=2, log=lambda _: None)
    assert stats["steps"] == 2 and stats["teacher_pairs"] == 2 * zoo.get_recipe("ddpm-one-step").config.batch_size
    student = zoo.load("ddpm-one-step", weights=tmp_path)
    teacher = zoo.load("ddpm")
    # the student starts from the teacher's UNet weights and is called once, at the chain's first timestep
    assert student.module.timestep == teacher.timesteps[0] == 999
    with pytest.raises(ValueError, match="takes no training images"):
        zoo.train("ddpm-one-step", tmp_path, images=data.subset_images()[:4], max_steps=1)


def test_one_step_model_reproduces_its_teachers_chain_in_one_evaluation():
    student, teacher = zoo.load("ddpm-one-step"), zoo.load("ddpm")
    z = student.sample_latents(16, torch.Generator().manual_seed(3))
    other = student.sample_latents(16, torch.Generator().manual_seed(4))
    with torch.no_grad():
        s, t, t_other = student.decode(z), teacher.decode(z), teacher.decode(other)
    same = float((s - t).pow(2).mean())
    # measured: 0.0057 to the teacher's image of the same noise, 0.094 to the teacher's image of other noise
    assert same < 0.25 * float((s - t_other).pow(2).mean())


def test_strong_autoencoder_meets_35_db_and_its_models_sample_unsaturated_images():
    from imgorigin.metrics import psnr
    from imgorigin.verification.fastpath import reconstruct
    from imgorigin.zoo.photos import random_crops

    gen = zoo.load("ldm-rgb-strong")
    crops = random_crops("heldout", 200, 32, seed=0)  # the card's held-out set
    # measured: 35.96 dB (the card); the first strong autoencoder (3 latent channels) reached 31.6
    assert float(psnr(quantize_8bit(reconstruct(gen, crops)).numpy(), crops.numpy()).mean()) >= 35.0
    for name in ("ldm-rgb-strong", "ldm-rgb-strong-b"):
        at_ends = float(clipped_fraction(zoo.sample(name, 32, seed=7)).mean())
        # measured: 1.1-1.4 % of pixels at 0 or 255 (real crops 1.4 %); the linear-schedule pair decoded 41 % there
        assert at_ends < 0.05, (name, at_ends)


def test_photo_crops_are_deterministic_and_keep_the_held_out_photos_apart():
    from imgorigin.zoo import photos

    a, b = photos.random_crops("heldout", 6, 32, seed=1), photos.random_crops("heldout", 6, 32, seed=1)
    assert a.shape == (6, 3, 32, 32) and torch.equal(a, b) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, photos.random_crops("heldout", 6, 32, seed=2))
    train = {p.name for p in photos.PHOTOS["train"]}
    held = {p.name for p in photos.PHOTOS["heldout"]}
    assert train and held and not train & held
    with pytest.raises(ValueError, match="split must be one of"):
        photos.load_photos("test")


def test_missing_photo_package_names_what_to_install(monkeypatch):
    from imgorigin.zoo import photos

    missing = photos.Photo("x", "no_such_package_here", "x.png")
    with pytest.raises(photos.PhotosNotFoundError, match="not installed"):
        photos.photo_path(missing)


@pytest.mark.parametrize("name", MODELS)
def test_every_recipe_has_a_training_module(name):
    recipe = zoo.get_recipe(name)
    assert recipe.training_module.__name__ == f"imgorigin.zoo.training.{recipe.module_name}"
    assert callable(recipe.training_module.train)


def _module_level_imports(tree: ast.Module) -> list[str]:
    """Names imported when a module is imported (function bodies, imported on call, are left out)."""
    names, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.ImportFrom):
            names += [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo += list(ast.iter_child_nodes(node))
    return names


def test_runtime_modules_do_not_import_training_code():
    for path in Path(zoo.__file__).parent.glob("*.py"):
        names = _module_level_imports(ast.parse(path.read_text()))
        assert not [n for n in names if n.startswith("imgorigin.zoo.training")], f"{path.name} imports training"


def test_loading_models_imports_no_training_code(monkeypatch):
    for key in [k for k in sys.modules if k.startswith("imgorigin.zoo.training")]:
        monkeypatch.delitem(sys.modules, key)
    monkeypatch.setitem(sys.modules, "imgorigin.zoo.training", None)  # any import of it now fails
    monkeypatch.delattr(zoo, "training", raising=False)
    for name in MODELS:
        assert load_generator(f"zoo:{name}").sample(1).shape == (1, *IMAGE_SHAPES[name])


def test_load_from_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="imgorigin.zoo.train"):
        zoo.load("dcgan", weights=tmp_path)


# -- Fréchet distance ----------------------------------------------------------------------------------
def test_frechet_distance_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    mu, sigma = quality.gaussian_stats(a)
    assert quality.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    assert quality.frechet_distance_features(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_one_dimensional_shift_is_shift_squared():
    # N(0, 1) vs N(3, 1): FD = 3² = 9; same variances, so the trace term vanishes
    assert quality.frechet_distance(np.zeros(1), np.eye(1), np.array([3.0]), np.eye(1)) == pytest.approx(9.0)
    # N(0, s1²) vs N(m, s2²) in 1-D: FD = m² + (s1 - s2)²
    fd = quality.frechet_distance(np.array([0.0]), np.array([[4.0]]), np.array([1.5]), np.array([[9.0]]))
    assert fd == pytest.approx(1.5**2 + (2.0 - 3.0) ** 2)
    # feature-level: a sample shifted by 2 in every one of 3 dimensions → 3 · 2²
    a = np.random.default_rng(1).normal(size=(200, 3))
    assert quality.frechet_distance_features(a, a + 2.0) == pytest.approx(12.0)


def test_frechet_distance_matches_sqrtm_formula():
    import scipy.linalg

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 6)), rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
    (m1, s1), (m2, s2) = quality.gaussian_stats(a), quality.gaussian_stats(b)
    ref = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert quality.frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-8)


def test_shipped_diffusers_configs_name_no_training_machine_path(tmp_path):
    """A reused model saved again (the one-step student's UNet, a shared autoencoder) keeps no ``_name_or_path``."""
    import json

    from imgorigin.zoo.training.common import save_diffusers
    from tiny_models import tiny_unet

    configs = sorted(zoo.weights_dir().glob("*/*/config.json"))
    assert configs and not [p for p in configs if "_name_or_path" in json.loads(p.read_text())]
    tiny_unet().save_pretrained(tmp_path / "a")
    reloaded = type(tiny_unet()).from_pretrained(tmp_path / "a")
    save_diffusers(reloaded, tmp_path / "b")
    assert "_name_or_path" not in json.loads((tmp_path / "b" / "config.json").read_text())
