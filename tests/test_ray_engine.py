"""The Ray engine (`--engine ray`) on a local 2-CPU Ray cluster: the local engine's records, error rows, resume.

Skipped as a whole when Ray Data is not installed (``pip install -e ".[ray]"``; the ``test`` extra includes it).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'imgorigin[ray]'")

import ray  # noqa: E402
import torch  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from imgorigin.batch import run_batch  # noqa: E402
from imgorigin.cli import app  # noqa: E402
from imgorigin.distributed import Engine, EngineConfig, Job, expand_manifests, read_manifest  # noqa: E402
from imgorigin.distributed.jobs import verifier_job  # noqa: E402
from imgorigin.distributed.ray_engine import Scorer, ray_records  # noqa: E402
from imgorigin.errors import UsageError  # noqa: E402
from imgorigin.images import save_png  # noqa: E402
from imgorigin.records import read_identity, read_records  # noqa: E402
from imgorigin.verification import Calibration, Verifier, calibrate, load_generator  # noqa: E402
from imgorigin.verification.inversion import InversionConfig  # noqa: E402
from tiny_models import TinyGenerator, real_like, save_torchscript  # noqa: E402

FAST = InversionConfig(steps=150, restarts=2, patience=30, batch_size=8, search_candidates=8, prune_after=0)
#: Fields that differ between any two runs of the same engine too (timings, cache hits).
VOLATILE = ("seconds", "cached")
RAY = ["--engine", "ray", "--actors", "2", "--ray-batch-size", "8"]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local Ray cluster of 2 CPUs for the in-process tests (the CLI joins it instead of starting its own)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model and its calibration; 16 members, 16 images of another model, 16 smooth 'real' images and 3
    corrupt files."""
    root = tmp_path_factory.mktemp("ray")
    save_torchscript(TinyGenerator(seed=0), root / "model.pt")
    gen = load_generator(str(root / "model.pt"))
    calibrate(gen, 30, config=FAST, learned_init=False).save(root / "cal.json")
    images = root / "images"
    images.mkdir()
    other = TinyGenerator(seed=5)  # another model's images: non-members
    with torch.no_grad():
        others = (other(torch.randn(16, 8, generator=torch.Generator().manual_seed(52))) + 1) / 2
    for i, image in enumerate([*gen.sample(16, seed=50), *others, *real_like(16, seed=51)]):
        save_png(image, images / f"{i:03d}.png")
    (images / "corrupt-0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (images / "corrupt-1.jpg").write_bytes(b"not an image at all")
    (images / "corrupt-2.png").write_bytes((images / "000.png").read_bytes()[:60])  # cut short
    return root


def _verifier(world: Path, cache: Path) -> Verifier:
    model = load_generator(str(world / "model.pt"))
    return Verifier(model, Calibration.load(world / "cal.json"), cache_dir=cache)


def _by_path(path: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert "imgorigin_run" in lines[0] and len({r["path"] for r in lines[1:]}) == len(lines) - 1  # once each
    return {r["path"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in lines[1:]}


def _close(a, b, rel: float) -> bool:
    """Equal, floats within ``rel`` (dicts and lists compared item by item; everything else exactly)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=rel, abs=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _differences(ray_file: Path, local_file: Path, rel: float = 1e-6) -> list[tuple]:
    """(path, field, Ray's value, local value) for every field that differs, floats beyond ``rel``: the scores of
    the same image in another batch differ in their last digits (the same products summed in another order)."""
    assert read_identity(ray_file) == read_identity(local_file)
    ours, theirs = _by_path(ray_file), _by_path(local_file)
    assert ours.keys() == theirs.keys()
    return [
        (path, key, ours[path].get(key), record.get(key))
        for path, record in theirs.items()
        for key in ours[path].keys() | record.keys()
        if not _close(ours[path].get(key), record.get(key), rel)
    ]


def test_verification_on_ray_gives_the_local_records_and_an_error_record_per_corrupt_file(world, tmp_path):
    paths = [world / "images"]
    local = _verifier(world, tmp_path / "cache-local")
    local_out, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    run_batch(paths, local.verify_paths, output=local_out, identity=local.identity())
    driver = _verifier(world, tmp_path / "cache-ray")  # a cold cache of its own: every image inverted on Ray
    config = EngineConfig(engine=Engine.ray, actors=2, ray_batch_size=8)
    job = verifier_job(driver, str(world / "model.pt"), device="cpu", cache_dir=tmp_path / "cache-ray")
    summary = run_batch(paths, ray_records(job, config), output=ray_out, identity=driver.identity())
    assert (summary.found, summary.errors, summary.exit_code) == (51, 3, 1)
    assert _differences(ray_out, local_out, rel=1e-3) == []  # scores: within 1e-4 (below), p-values follow
    records = {r["path"]: r for r in read_records(ray_out)}
    for path, record in ((r["path"], r) for r in read_records(local_out) if "score" in r):
        assert records[path]["score"] == pytest.approx(record["score"], rel=1e-4, abs=1e-12)
    verdicts = [r["verdict"] for r in records.values() if "verdict" in r]
    assert {"member", "non-member"} <= set(verdicts)  # both decided, the same way as the local engine
    assert all(not r["cached"] for r in records.values() if "cached" in r)


def test_verify_cli_on_ray_writes_the_local_engine_file(world, tmp_path):
    argv = ["verify", str(world / "model.pt"), str(world / "images"), "-c", str(world / "cal.json"), "--device", "cpu"]
    local = CliRunner().invoke(app, [*argv, "-o", str(tmp_path / "local.jsonl"), "--cache-dir", str(tmp_path / "cl")])
    on_ray = CliRunner().invoke(
        app, [*argv, "-o", str(tmp_path / "ray.jsonl"), "--cache-dir", str(tmp_path / "cr"), *RAY]
    )
    assert local.exit_code == on_ray.exit_code == 1, local.output + on_ray.output  # 1: some files unreadable
    assert _differences(tmp_path / "ray.jsonl", tmp_path / "local.jsonl", rel=1e-3) == []
    records = list(read_records(tmp_path / "ray.jsonl"))
    assert sum("error" in r for r in records) == 3 and sum("verdict" in r for r in records) == 48


def test_attribute_and_confirm_on_ray_write_the_local_engine_file(world, tmp_path):
    train = tmp_path / "train"
    for label, seed in (("a", 1), ("b", 2)):
        (train / label).mkdir(parents=True)
        for i, image in enumerate(real_like(8, seed=seed, size=32 if label == "a" else 16)):
            save_png(image, train / label / f"{i}.png")
    clf, cache = tmp_path / "clf", ["--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    bind = ["--bind", f"a={world / 'model.pt'}@{world / 'cal.json'}"]
    fitted = CliRunner().invoke(app, ["fit", str(train), "-o", str(clf), "--backbone", "spectrum", *bind, *cache])
    assert fitted.exit_code == 0, fitted.output
    for mode in ([], ["--confirm"]):
        argv = ["attribute", str(clf), str(world / "images"), *mode, *cache]
        local = CliRunner().invoke(app, [*argv, "-o", str(tmp_path / "local.jsonl")])
        on_ray = CliRunner().invoke(app, [*argv, "-o", str(tmp_path / "ray.jsonl"), *RAY])
        assert (local.exit_code, on_ray.exit_code) == (1, 1), on_ray.output
        assert _differences(tmp_path / "ray.jsonl", tmp_path / "local.jsonl") == []
        errors = [r for r in read_records(tmp_path / "ray.jsonl") if "error" in r]
        assert sorted(Path(r["path"]).name for r in errors) == ["corrupt-0.png", "corrupt-1.jpg", "corrupt-2.png"]
        again = CliRunner().invoke(app, [*argv, "-o", str(tmp_path / "ray.jsonl"), *RAY])  # resumed: errors retried
        assert again.exit_code == 1 and "48 of 51 images already answered" in again.stderr
        assert _differences(tmp_path / "ray.jsonl", tmp_path / "local.jsonl") == []
        (tmp_path / "local.jsonl").unlink()
        (tmp_path / "ray.jsonl").unlink()


class _Flaky:
    """A scorer whose batch call raises when it holds a 'poison' path, and whose single-file call raises for it."""

    def identity(self) -> dict:
        return {"task": "test"}

    def records(self, paths: list[str]):
        if any("poison" in p for p in paths):
            if len(paths) > 1:
                raise RuntimeError("a batch with poison")
            raise MemoryError("poisoned")
        return [{"path": p, "ok": True} for p in paths]


def test_a_batch_that_raises_is_retried_file_by_file_and_only_the_bad_file_gets_an_error_record(tmp_path):
    scorer = Scorer(Job(_Flaky, "records", {"task": "test"}), 1.0, os.getcwd())
    records = scorer.score(["a.png", "poison.png", "b.png"])
    assert records == [
        {"path": "a.png", "ok": True},
        {"path": "poison.png", "error": "poison.png: MemoryError: poisoned"},
        {"path": "b.png", "ok": True},
    ]
    with pytest.raises(Exception, match="differs from the driver's in task"):
        Scorer(Job(_Flaky, "records", {"task": "other"}), 1.0, os.getcwd())


def test_manifests_text_csv_and_parquet_and_the_at_file_argument(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "list.txt").write_text("# images\nx/a.png\n\n/abs/b.png\nfile:///abs/c.png\n")
    assert read_manifest(tmp_path / "list.txt") == [str(tmp_path / "x/a.png"), "/abs/b.png", "/abs/c.png"]
    (tmp_path / "list.csv").write_text("id,path\n1,a.png\n2,/abs/b.png\n")
    assert read_manifest(tmp_path / "list.csv") == [str(tmp_path / "a.png"), "/abs/b.png"]
    pq.write_table(pa.table({"path": ["/abs/a.png", "b.png"]}), tmp_path / "list.parquet")
    assert read_manifest(tmp_path / "list.parquet") == ["/abs/a.png", str(tmp_path / "b.png")]
    assert expand_manifests(["one.png", f"@{tmp_path / 'list.csv'}"]) == [
        "one.png",
        str(tmp_path / "a.png"),
        "/abs/b.png",
    ]
    (tmp_path / "remote.txt").write_text("s3://bucket/a.png\n")
    with pytest.raises(UsageError, match="only file paths"):
        read_manifest(tmp_path / "remote.txt")


def test_engine_options_on_the_local_engine_are_a_usage_error_and_parquet_needs_an_output(world, tmp_path):
    result = CliRunner().invoke(app, ["attribute", str(tmp_path / "none"), str(world / "images"), "--actors", "2"])
    assert result.exit_code == 2 and "--actors only apply with --engine ray" in result.output
    with pytest.raises(UsageError, match="--parquet needs --output"):
        EngineConfig(parquet=tmp_path / "p").finish(None)


def test_the_parquet_dataset_holds_every_record_of_the_results_file(world, tmp_path):
    import pyarrow.parquet as pq

    from imgorigin.distributed.engine import write_parquet

    local = _verifier(world, tmp_path / "cache")
    out = tmp_path / "r.jsonl"
    run_batch([world / "images"], local.verify_paths, output=out, identity=local.identity())
    parts = write_parquet(out, tmp_path / "parquet", rows_per_file=20)
    table = pq.read_table(tmp_path / "parquet")
    assert len(parts) == 3 and table.num_rows == 51
    assert json.loads(table.schema.metadata[b"imgorigin_run"]) == read_identity(out)
    rows = {row["path"]: row for row in table.to_pylist()}
    for record in read_records(out):
        row = rows[record["path"]]
        assert row.get("score") == record.get("score") and row.get("error") == record.get("error")
        if "processing" in record:
            assert json.loads(row["processing"]) == record["processing"]


@pytest.mark.slow
def test_a_ray_run_killed_with_sigkill_halfway_and_rerun_has_every_image_exactly_once(world, tmp_path):
    """The driver is killed once it has written some records (a fresh local cluster, a cold score cache)."""
    images = tmp_path / "images"
    images.mkdir()
    gen = load_generator(str(world / "model.pt"))
    for i, image in enumerate([*gen.sample(60, seed=70), *real_like(60, seed=71)]):
        save_png(image, images / f"{i:03d}.png")
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    env = {**os.environ, "IMGORIGIN_CACHE": str(tmp_path / "cache")}
    script = functools.partial(_driver_script, world, images)
    out = tmp_path / "killed.jsonl"
    child = subprocess.Popen([sys.executable, "-c", script(out)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None and _count(out) < 20:
        time.sleep(0.05)
    assert child.poll() is None, "the run ended before it could be killed halfway"
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed_at = _count(out)
    assert 0 < killed_at < 121
    finished = subprocess.run([sys.executable, "-c", script(out)], env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"resuming {out}: " in finished.stderr
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    paths = [r["path"] for r in lines[1:]]
    assert len(paths) == len(set(paths)) == 121  # every image exactly once, none lost
    local = _verifier(world, tmp_path / "cache-clean")
    clean = tmp_path / "clean.jsonl"
    run_batch([images], local.verify_paths, output=clean, identity=local.identity())
    assert _differences(out, clean, rel=1e-3) == []


def _count(path: Path) -> int:
    return len(read_records(path)) if path.exists() else 0


def _driver_script(world: Path, images: Path, out: Path) -> str:
    """A driver process: the Ray engine over ``images`` into ``out`` (its own local Ray cluster)."""
    return f"""
import sys
from pathlib import Path
from imgorigin.batch import run_batch
from imgorigin.distributed import Engine, EngineConfig
from imgorigin.distributed.jobs import verifier_job
from imgorigin.distributed.ray_engine import ray_records
from imgorigin.runtime import default_cache_dir
from imgorigin.verification import Calibration, Verifier, load_generator
verifier = Verifier(load_generator({str(world / "model.pt")!r}), Calibration.load({str(world / "cal.json")!r}),
                    cache_dir=default_cache_dir())
job = verifier_job(verifier, {str(world / "model.pt")!r}, device="cpu", cache_dir=None)
config = EngineConfig(engine=Engine.ray, actors=2, ray_batch_size=4)
summary = run_batch([Path({str(images)!r})], ray_records(job, config), output=Path({str(out)!r}),
                    identity=verifier.identity(), log=lambda m: print(m, file=sys.stderr))
print(summary.line(), file=sys.stderr)
sys.exit(0 if summary.errors == 1 else 3)
"""
