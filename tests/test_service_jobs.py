"""A real `imgorigin serve` killed with SIGKILL halfway through a job and started again: every image ends with
exactly one record, the records written before the kill are kept as they were, and all equal an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from imgorigin.images import save_png
from imgorigin.verification import Calibration, Verifier, load_generator
from imgorigin.verification.inversion import InversionConfig
from imgorigin.verification.verifier import calibrate
from tiny_models import TinyGenerator, real_like, save_torchscript

#: Adam alone for a fixed 400 steps: slow enough (~0.4 s per chunk of 2 images here) to be killed halfway.
SLOW = InversionConfig(steps=400, restarts=2, patience=400, refine_steps=0, search_candidates=4, prune_after=0)
N = 12
MASKED = ("seconds", "cached")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(config: Path, port: int, log: Path) -> subprocess.Popen:
    """`imgorigin serve` in its own process, its JSON-line logs appended to ``log``; returns once it is ready."""
    command = [sys.executable, "-c", "from imgorigin.cli import main; main()", "serve", "--config", str(config)]
    with log.open("a") as stream:
        process = subprocess.Popen([*command, "--port", str(port)], stdout=stream, stderr=stream)
    end = time.monotonic() + 90
    while time.monotonic() < end:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"server not ready in time:\n{log.read_text()}")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("service_jobs")
    torch.set_num_threads(1)
    save_torchscript(TinyGenerator(seed=0), root / "tiny.pt")
    generator = load_generator(str(root / "tiny.pt"))
    calibrate(generator, 20, config=SLOW).save(root / "tiny.cal.json")
    (root / "images").mkdir()
    images = torch.cat([generator.sample(N // 2, seed=70), real_like(N // 2, seed=71)])
    for i, image in enumerate(images):
        save_png(image, root / "images" / f"{i:02d}.png")
    (root / "serve.toml").write_text(
        'device = "cpu"\nwork_dir = "work"\ncache_dir = ""\n'
        "[limits]\njob_chunk = 2\n"
        '[[models]]\nid = "tiny"\nmodel = "tiny.pt"\ncalibration = "tiny.cal.json"\n'
    )
    return root


def test_a_job_survives_sigkill_with_one_record_per_image(world, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    files = sorted((world / "images").iterdir())
    port, log = _free_port(), world / "server.log"
    server = _start(world / "serve.toml", port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        uploads = [("images", (f"img-{p.name}", p.read_bytes(), "image/png")) for p in files]
        job = httpx.post(f"{base}/v1/jobs", data={"model": "tiny"}, files=uploads, timeout=30).json()
        url = f"{base}/v1/jobs/{job['id']}"
        while (before := httpx.get(url, timeout=5).json())["done"] < 3:
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
    assert before["done"] < N, "the job finished before the kill: nothing was interrupted"
    folder = world / "work" / "jobs" / job["id"]
    assert len(list(folder.iterdir())) == N  # the uploads wait in the job folder until the job completes

    server = _start(world / "serve.toml", port, log)
    try:
        end = time.monotonic() + 60
        while (after := httpx.get(url, timeout=5).json())["status"] != "done":
            assert time.monotonic() < end and after["status"] != "failed", after
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
    records = after["records"]
    assert after["done"] == after["total"] == N and [r["path"] for r in records] == [f"img-{p.name}" for p in files]
    assert records[: before["done"]] == before["records"]  # finished before the kill: kept exactly
    assert not folder.exists()

    verifier = Verifier(load_generator(str(world / "tiny.pt")), Calibration.load(world / "tiny.cal.json"))
    uninterrupted = {os.path.basename(r["path"]): r for r in verifier.verify_paths(files)}
    for record in records:
        expected = uninterrupted[record["path"].removeprefix("img-")]
        # another process (its own thread count): the same scores up to float32 reduction order
        assert record["verdict"] == expected["verdict"]
        assert record["score"] == pytest.approx(expected["score"], rel=1e-5)
        same = [k for k in expected if k not in (*MASKED, "path", "model", "score", "p_value_grubbs")]
        assert {k: record[k] for k in same} == {k: expected[k] for k in same}, record["path"]
    assert [r["verdict"] for r in records].count("member") == N // 2
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request"]
    assert requests and all("img-" not in json.dumps(line) for line in lines)  # no file names in the logs
    assert any(line.get("event") == "job_started" and line["done"] >= before["done"] for line in lines)
