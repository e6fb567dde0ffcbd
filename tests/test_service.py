"""imgorigin serve in process: every endpoint, every refusal, the same records as the CLI, no server path out."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from fuzz_corpus import png_declaring
from imgorigin.attribution.attributor import Attributor
from imgorigin.cli import app as cli
from imgorigin.images import save_png
from imgorigin.service import create_app, default_config, hash_key, load_config
from imgorigin.service.config import EXAMPLE, ApiKey, ConfigError, Limits
from imgorigin.service.logs import JsonFormatter
from imgorigin.twostage import Binding, Bindings
from imgorigin.verification import load_generator
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import calibrate
from tiny_models import TinyGenerator, real_like, save_torchscript

FAST = InversionConfig(steps=150, restarts=2, patience=30, batch_size=32, search_candidates=8, prune_after=0)
KEY = "s3cret-key"
LIMITS = Limits(
    max_file_bytes=64_000, max_request_bytes=300_000, max_files=6, max_pixels=256 * 256, job_chunk=2, rate_burst=10_000
)


def build_world(root: Path, inversion: InversionConfig = FAST) -> Path:
    """tiny.pt + its calibration, member and real PNGs, a spectrum classifier with class ``a`` bound to tiny.pt, and
    serve.toml serving them (model ``tiny``; classifiers ``clf`` with two-stage and ``plain`` without)."""
    save_torchscript(TinyGenerator(seed=0), root / "tiny.pt")
    generator = load_generator(str(root / "tiny.pt"))
    calibrate(generator, 30, config=inversion, learned_init=False).save(root / "tiny.cal.json")
    for folder, images in (
        ("members", generator.sample(4, seed=50)),
        ("real", real_like(4, seed=52)),
        ("train/a", generator.sample(10, seed=60)),
        ("train/real", real_like(10, seed=61)),
    ):
        (root / folder).mkdir(parents=True)
        for i, image in enumerate(images):
            save_png(image, root / folder / f"{i}.png")
    attributor = Attributor.fit(
        root / "train", backbone="spectrum", layer="radial", rejection="mahalanobis", device="cpu"
    )
    attributor.save(root / "clf")
    Bindings([Binding("a", str(root / "tiny.pt"), str(root / "tiny.cal.json"))]).save(root / "clf")
    (root / "serve.toml").write_text(
        'device = "cpu"\nwork_dir = "work"\ncache_dir = "cache"\n'
        '[[models]]\nid = "tiny"\nmodel = "tiny.pt"\ncalibration = "tiny.cal.json"\n'
        '[[classifiers]]\nid = "clf"\npath = "clf"\ntwo_stage = true\n'
        '[[classifiers]]\nid = "plain"\npath = "clf"\n'
    )
    return root / "serve.toml"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny models gain nothing from more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("service")
    build_world(root)
    return root


def _client(config) -> TestClient:
    """A started client whose models are loaded."""
    client = TestClient(create_app(config))
    client.__enter__()
    assert client.app.state.service.wait_ready(60), client.app.state.service.load_error
    return client


@pytest.fixture(scope="module")
def config(world):
    return replace(load_config(world / "serve.toml"), limits=LIMITS)


@pytest.fixture(scope="module")
def client(config):
    client = _client(config)
    yield client
    client.__exit__(None, None, None)


def _png(path: Path) -> bytes:
    return path.read_bytes()


def _image_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _files(*items: tuple[str, bytes]) -> list:
    return [("images", (name, data, "application/octet-stream")) for name, data in items]


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"], body
    return body


def _cli_records(world: Path, paths: list[Path], tmp_path: Path) -> dict[str, dict]:
    out = tmp_path / "cli.jsonl"
    args = ["verify", str(world / "tiny.pt"), *map(str, paths), "-c", str(world / "tiny.cal.json")]
    result = CliRunner().invoke(cli, [*args, "-o", str(out), "--cache-dir", str(tmp_path / "c"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return {r["path"]: r for r in map(json.loads, out.read_text().splitlines()) if "path" in r}


# --- configuration ----------------------------------------------------------------------------------------------
def test_example_config_loads_and_mistakes_are_named(tmp_path, monkeypatch):
    (tmp_path / "serve.toml").write_text(EXAMPLE)
    with pytest.raises(ConfigError, match="IMGORIGIN_API_KEYS"):
        load_config(tmp_path / "serve.toml")  # keys promised from the environment: never start open
    monkeypatch.setenv("IMGORIGIN_API_KEYS", "ops=abc,plain-key")
    config = load_config(tmp_path / "serve.toml")
    assert [m.id for m in config.models] == ["dcgan", "mygan"] and config.models[0].calibration.endswith("dcgan.json")
    assert config.models[1].calibration == str(tmp_path / "models" / "g.cal.json")
    assert [(k.name, k.sha256) for k in config.keys] == [
        ("analyst", hash_key("example-key")),
        ("ops", hash_key("abc")),
        ("env-2", hash_key("plain-key")),
    ]
    assert config.classifiers[0].path == str(tmp_path / "clf") and config.classifiers[0].two_stage
    assert config.limits == Limits() and config.work_dir == tmp_path / "serve-data"
    assert config.detail_alpha == 0.001
    (tmp_path / "off.toml").write_text("detail_alpha = 0\n[[models]]\nid='a'\nmodel='zoo:vae'\n")
    assert load_config(tmp_path / "off.toml").detail_alpha is None
    for text, message in (
        ("[[models]]\nid='a'\nmodel='zoo:vae'\nspeed=1\n", "unknown setting"),
        ("[[models]]\nid='a b'\nmodel='zoo:vae'\n", "id must be"),
        ("[[models]]\nid='a'\nmodel='zoo:vae'\n[[models]]\nid='a'\nmodel='zoo:dcgan'\n", "configured twice"),
        ("[[models]]\nid='a'\nmodel='zoo:ddpm-one-step'\n", "ships without a calibration"),
        ("[limits]\nmax_files=0\n[[models]]\nid='a'\nmodel='zoo:vae'\n", "must be positive"),
        ("[auth]\nkeys=[{name='x', sha256='KEY'}]\n[[models]]\nid='a'\nmodel='zoo:vae'\n", "64 hex digits"),
        ("alpha = 1.5\n[[models]]\nid='a'\nmodel='zoo:vae'\n", "alpha"),
        ("detail_alpha = 1.5\n[[models]]\nid='a'\nmodel='zoo:vae'\n", "detail_alpha must be"),
        ("", "serves no model"),
        ("[[models]\n", "not valid TOML"),
    ):
        (tmp_path / "bad.toml").write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(tmp_path / "bad.toml")


def test_default_config_serves_the_zoo_and_says_why_the_uncalibrated_are_left_out(monkeypatch):
    monkeypatch.delenv("IMGORIGIN_API_KEYS", raising=False)
    config = default_config()
    ids = [m.id for m in config.models]
    served = ["dcgan", "dcgan-twin", "wgangp", "vae", "ddpm", "ldm", "vae-rgb", "ldm-rgb"]
    assert ids == [f"zoo:{name}" for name in served] and not config.keys
    uncalibrated = ["ddpm-one-step", "dcgan-rgb", "ldm-rgb-strong", "ldm-rgb-strong-b"]
    assert [s[0] for s in config.skipped] == [f"zoo:{name}" for name in uncalibrated]
    assert all("ships without a calibration" in why for _, why in config.skipped)


# --- the endpoints ----------------------------------------------------------------------------------------------
def test_health_readiness_and_openapi(client, world):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready == {"ready": True, "models": ["tiny"], "classifiers": ["clf", "plain"], "jobs_unfinished": 0}
    schema = client.get("/v1/openapi.json").json()
    assert {"/v1/verify", "/v1/attribute", "/v1/jobs", "/v1/jobs/{id}", "/v1/models", "/v1/classifiers"} <= set(
        schema["paths"]
    )
    body = schema["paths"]["/v1/verify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["model", "images"] and "413" in schema["paths"]["/v1/verify"]["post"]["responses"]
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text and "http" not in page.text.split("<body")[0]
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    _error(client.get("/static/../serve.toml"), 404, "not_found")
    assert "content-security-policy" in page.headers and page.headers["x-request-id"]


def test_models_classifiers_and_calibration_say_the_operating_point(client, world):
    text = client.get("/v1/models").text
    model = json.loads(text)["models"][0]
    assert model["id"] == "tiny" and model["image_shape"] == [1, 16, 16] and model["calibration"]["n"] == 30
    assert "at most 5% of the model's own images are rejected" in model["operating_point"]
    view = client.get("/v1/models/tiny/calibration", params={"alpha": 0.2}).json()
    scores = np.sort(np.asarray(view["scores"]))
    assert view["alpha"] == 0.2 and len(scores) == 30 and view["threshold"] == max(scores[30 - 6], view["floor"])
    _error(client.get("/v1/models/nope/calibration"), 404, "unknown_model")
    _error(client.get("/v1/models/tiny/calibration", params={"alpha": 2}), 422, "invalid_alpha")
    classifiers = client.get("/v1/classifiers").json()["classifiers"]
    assert [(c["id"], c["confirm"], c["classes"]) for c in classifiers] == [
        ("clf", True, ["a", "real"]),
        ("plain", False, ["a", "real"]),
    ]
    assert classifiers[0]["bound"] == {"a": "tiny"} and "With confirm" in classifiers[0]["operating_point"]
    assert str(world) not in text + json.dumps(classifiers)  # no server path leaves the server


def test_verify_records_equal_the_cli_records(client, world, tmp_path):
    paths = [world / "members" / "0.png", world / "members" / "1.png", world / "real" / "0.png"]
    names = ["m0.png", "m1.png", "r0.png"]
    response = client.post(
        "/v1/verify", data={"model": "tiny"}, files=_files(*zip(names, map(_png, paths), strict=True))
    )
    assert response.status_code == 200, response.text
    assert str(world) not in response.text
    records = response.json()["records"]
    assert [r["path"] for r in records] == names and all(r["model"] == "tiny" for r in records)
    expected = _cli_records(world, paths, tmp_path)
    for record, path in zip(records, paths, strict=True):
        cli_record = expected[str(path)]
        assert record["verdict"] == cli_record["verdict"] and record["score"] == pytest.approx(cli_record["score"])
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        masked = {k for k in record if k not in ("path", "model", "seconds", "cached")}
        nested = {k for k in masked if isinstance(record[k], dict | list)}  # approx takes flat mappings of numbers
        assert {k: record[k] for k in nested} == {k: cli_record[k] for k in nested}
        flat = masked - nested
        assert {k: record[k] for k in flat} == pytest.approx({k: cli_record[k] for k in flat})
    # the tiny model's images are near-white noise: the smooth 'real' one has less fine detail than any of them,
    # as a member resized down and back would, so the verifier will not call it non-member
    assert [r["verdict"] for r in records] == ["member", "member", "inconclusive"]
    assert "smoother_than_model" in records[2]["reasons"] and records[2]["p_value_detail"] < 1e-3
    loose = client.post("/v1/verify", data={"model": "tiny", "alpha": "0.5"}, files=_files(("m0.png", _png(paths[0]))))
    assert loose.json()["records"][0]["alpha"] == 0.5
    assert not any((world / "work" / "uploads").iterdir())  # nothing kept after the answer


def test_attribute_records_equal_the_library_ones(client, world):
    paths = [world / "members" / "0.png", world / "real" / "1.png"]
    files = _files(("m.png", _png(paths[0])), ("r.png", _png(paths[1])))
    plain = client.post("/v1/attribute", data={"classifier": "clf"}, files=files).json()["records"]
    library = list(Attributor.load(world / "clf", device="cpu").attribute_paths(paths))
    assert [r["path"] for r in plain] == ["m.png", "r.png"]
    assert [(r["label"], r["sha256"]) for r in plain] == [(r["label"], r["sha256"]) for r in library]
    assert [r["confidence"] for r in plain] == pytest.approx([r["confidence"] for r in library])
    confirmed = client.post("/v1/attribute", data={"classifier": "clf", "confirm": "true"}, files=files)
    records = confirmed.json()["records"]
    assert [(r["label"], r["rule"]) for r in records] == [("a", "verification"), ("inconclusive", "conflict")]
    assert records[1]["reasons"] == ["smoother_than_model"]  # see test_verify_records_equal_the_cli_records
    assert records[0]["verification"]["a"]["model"] == "tiny" and str(world) not in confirmed.text
    refused = client.post("/v1/attribute", data={"classifier": "plain", "confirm": "yes"}, files=files)
    _error(refused, 422, "confirm_unavailable")
    _error(
        client.post("/v1/attribute", data={"classifier": "clf", "confirm": "maybe"}, files=files), 422, "invalid_field"
    )


# --- refusals -----------------------------------------------------------------------------------------------------
def malformed_corpus(member: bytes) -> dict[str, tuple[bytes, int, str | None]]:
    """name -> (bytes, expected status, expected error code or None when the image is answered)."""
    grey = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    flipped = bytearray(member)
    flipped[len(flipped) // 2] ^= 0x10
    frames = [grey, grey.transpose(Image.Transpose.ROTATE_90)]
    return {
        "zero.png": (b"", 422, "empty_file"),
        "truncated.png": (member[: len(member) // 2], 422, "undecodable_image"),
        "bitflip.png": (bytes(flipped), 422, "undecodable_image"),
        "header-flip.png": (b"\x88" + member[1:], 415, "unsupported_format"),
        "text.png": (b"GIF89a is not what this is" * 10, 415, "unsupported_format"),
        "real.gif": (_image_bytes(grey.convert("P"), "GIF"), 415, "unsupported_format"),
        "bomb.png": (png_declaring(30000, 30000, colour_type=0), 422, "too_many_pixels"),
        "big-pixels.png": (_image_bytes(Image.new("L", (300, 300)), "PNG"), 422, "too_many_pixels"),
        "oversize.bmp": (_image_bytes(Image.new("RGB", (150, 150)), "BMP"), 413, "file_too_large"),
        "png-named.jpg": (member, 200, None),
        "sixteen-bit.png": (_image_bytes(Image.fromarray(np.full((16, 16), 40000, np.uint16)), "PNG"), 200, None),
        "cmyk.jpg": (_image_bytes(grey.convert("CMYK"), "JPEG"), 200, None),
        "animated.png": (_image_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:]), 200, None),
        "animated.webp": (_image_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:]), 200, None),
    }


def test_malformed_uploads_get_clear_codes_and_the_server_stays_up(client, world):
    corpus = malformed_corpus(_png(world / "members" / "0.png"))
    for name, (data, status, code) in corpus.items():
        response = client.post("/v1/verify", data={"model": "tiny"}, files=_files((name, data)))
        assert response.status_code == status, (name, response.text)
        if code is None:
            assert response.json()["records"][0]["path"] == name and "verdict" in response.json()["records"][0]
        else:
            assert response.json()["error"]["code"] == code, name
            assert name in response.json()["error"]["message"] and str(world) not in response.text
    reasons = {}
    for name in ("sixteen-bit.png", "cmyk.jpg", "png-named.jpg"):
        response = client.post("/v1/verify", data={"model": "tiny"}, files=_files((name, corpus[name][0])))
        reasons[name] = response.json()["records"][0]
    assert "high_bit_depth_reduced" in reasons["sixteen-bit.png"]["reasons"]
    assert reasons["cmyk.jpg"]["mode"] == "CMYK" and "recompressed_jpeg" in reasons["cmyk.jpg"]["reasons"]
    assert reasons["png-named.jpg"]["format"] == "PNG"  # the bytes decide, not the name
    assert client.get("/healthz").status_code == 200
    assert not any((world / "work" / "uploads").iterdir())


def test_request_refusals(client, world):
    png = _png(world / "members" / "0.png")
    _error(client.post("/v1/verify", data={"model": "nope"}, files=_files(("a.png", png))), 404, "unknown_model")
    _error(client.post("/v1/verify", data={"alpha": "0.1"}, files=_files(("a.png", png))), 400, "invalid_request")
    _error(
        client.post("/v1/attribute", data={"classifier": "x"}, files=_files(("a.png", png))), 404, "unknown_classifier"
    )
    _error(client.post("/v1/verify", data={"model": "tiny"}, files={"other": ("a", b"x")}), 400, "unexpected_field")
    _error(
        client.post("/v1/verify", data={"model": "tiny", "alpha": "1"}, files=_files(("a.png", png))),
        422,
        "invalid_alpha",
    )
    only_model = b'--xyz\r\nContent-Disposition: form-data; name="model"\r\n\r\ntiny\r\n--xyz--\r\n'
    multipart = {"content-type": "multipart/form-data; boundary=xyz"}
    _error(client.post("/v1/verify", content=only_model, headers=multipart), 400, "no_images")
    _error(client.post("/v1/verify", json={"model": "tiny"}), 415, "unsupported_media_type")
    _error(
        client.post("/v1/verify", data={"model": "tiny"}, files=_files(*[("a.png", png)] * 7)), 413, "too_many_files"
    )
    big = b"-" * (LIMITS.max_request_bytes + 1)
    headers = {"content-type": "multipart/form-data; boundary=xyz"}
    _error(client.post("/v1/verify", content=big, headers=headers), 413, "request_too_large")
    _error(client.post("/v1/verify", content=b"--xyz\r\nbroken", headers=headers), 400, "bad_upload")
    _error(client.get("/v1/jobs/0123"), 404, "unknown_job")
    _error(client.delete("/v1/models"), 405, "method_not_allowed")
    _error(client.get("/v1/jobs/x", params={"limit": 0}), 422, "invalid_request")


def test_api_keys_rate_limit_back_pressure_and_timeout(config, world):
    keyed = replace(
        config,
        classifiers=(),
        keys=(ApiKey("ana", hash_key(KEY)),),
        limits=replace(LIMITS, rate_burst=2, rate_per_minute=1, max_queue=0),  # 2 keyed requests, then 429
        work_dir=world / "work-keyed",
    )
    client = _client(keyed)
    try:
        png = _png(world / "members" / "0.png")
        assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
        assert client.get("/").status_code == 200
        missing = _error(client.get("/v1/models"), 401, "missing_api_key")
        assert missing and client.get("/v1/models").headers["www-authenticate"] == "Bearer"
        _error(client.get("/v1/models", headers={"X-API-Key": "wrong"}), 403, "invalid_api_key")
        _error(client.get("/v1/openapi.json"), 401, "missing_api_key")
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        service = client.app.state.service
        with service.work.slot():  # the only work slot is taken and nothing may wait: 503 with Retry-After
            busy = client.post(
                "/v1/verify", data={"model": "tiny"}, files=_files(("a.png", png)), headers={"X-API-Key": KEY}
            )
            _error(busy, 503, "busy")
            assert int(busy.headers["retry-after"]) >= 1
        limited = client.get("/v1/models", headers={"X-API-Key": KEY})
        _error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
    finally:
        client.__exit__(None, None, None)
    slow = replace(config, classifiers=(), limits=replace(LIMITS, request_timeout_s=0.3), work_dir=world / "work-slow")
    client = _client(slow)
    try:
        with client.app.state.service.work.slot():  # the request waits for the slot past its deadline
            start = time.monotonic()
            _error(client.post("/v1/verify", data={"model": "tiny"}, files=_files(("a.png", png))), 504, "timeout")
            assert time.monotonic() - start < 3
    finally:
        client.__exit__(None, None, None)


# --- jobs in process ----------------------------------------------------------------------------------------------
def test_jobs_give_the_same_records_and_leave_no_files(client, world):
    paths = [world / "members" / "2.png", world / "real" / "2.png", world / "members" / "3.png"]
    files = _files(*((f"j{i}.png", _png(p)) for i, p in enumerate(paths)))
    created = client.post("/v1/jobs", data={"model": "tiny"}, files=files)
    assert created.status_code == 202, created.text
    job = created.json()
    assert job["status"] == "queued" and job["total"] == 3 and job["url"] == f"/v1/jobs/{job['id']}"
    state = _wait(client, job["url"])
    assert state["done"] == 3 and [r["path"] for r in state["records"]] == ["j0.png", "j1.png", "j2.png"]
    direct = client.post("/v1/verify", data={"model": "tiny"}, files=files).json()["records"]
    assert [(r["verdict"], r["score"]) for r in state["records"]] == [(r["verdict"], r["score"]) for r in direct]
    assert not (world / "work" / "jobs" / job["id"]).exists()
    page = client.get(job["url"], params={"offset": 1, "limit": 1}).json()
    assert [r["path"] for r in page["records"]] == ["j1.png"] and page["next_offset"] == 2
    attribute = client.post("/v1/jobs", data={"classifier": "clf", "confirm": "1"}, files=files[:1]).json()
    assert _wait(client, attribute["url"])["records"][0]["label"] == "a"
    _error(client.post("/v1/jobs", data={"model": "tiny", "classifier": "clf"}, files=files), 400, "invalid_request")
    _error(client.post("/v1/jobs", data={"model": "tiny"}, files=_files(("z.png", b""))), 422, "empty_file")


def _wait(client, url: str, timeout: float = 30) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = client.get(url).json()
        if state["status"] in ("done", "failed"):
            assert state["status"] == "done", state
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {url} not done in {timeout} s")


def test_job_queue_full_is_503(config, world):
    small = replace(config, classifiers=(), limits=replace(LIMITS, max_pending_jobs=1), work_dir=world / "work-q")
    client = _client(small)
    try:
        files = _files(("a.png", _png(world / "members" / "0.png")))
        hold = client.app.state.service.work.slot()
        hold.__enter__()  # the runner cannot start the first job, so it stays unfinished
        try:
            assert client.post("/v1/jobs", data={"model": "tiny"}, files=files).status_code == 202
            _error(client.post("/v1/jobs", data={"model": "tiny"}, files=files), 503, "job_queue_full")
        finally:
            hold.__exit__(None, None, None)
    finally:
        client.__exit__(None, None, None)


# --- logs -----------------------------------------------------------------------------------------------------------
def test_request_logs_are_json_lines_without_image_names(client, world, caplog):
    caplog.set_level(logging.INFO, logger="imgorigin.service")
    response = client.post("/v1/verify", data={"model": "tiny"}, files=_files(("secret-name.png", b"")))
    assert response.status_code == 422
    entries = [r for r in caplog.records if getattr(r, "event", None) == "request"]
    assert entries and entries[-1].status == 422 and entries[-1].code == "empty_file" and entries[-1].images == 1
    line = JsonFormatter().format(entries[-1])
    parsed = json.loads(line)
    assert parsed["path"] == "/v1/verify" and parsed["request_id"] and "secret-name" not in line


def test_a_model_that_cannot_load_is_reported_and_a_work_folder_serves_one_server(config, world):
    (world / "broken.pt").write_bytes(b"not a TorchScript file")
    broken = replace(
        config, models=(replace(config.models[0], model=str(world / "broken.pt")),), work_dir=world / "work-broken"
    )
    client = TestClient(create_app(broken))
    with client:
        assert not client.app.state.service.wait_ready(60)
        failed = _error(client.get("/readyz"), 503, "load_failed")
        assert str(world) not in failed["error"]["message"]
        _error(client.get("/v1/models"), 503, "load_failed")
        assert client.get("/healthz").status_code == 200
        with pytest.raises(ConfigError, match="another imgorigin server"), TestClient(create_app(broken)):
            pass
