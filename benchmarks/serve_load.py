"""Bounded load test of `imgorigin serve` on 127.0.0.1: good and malformed images mixed, several clients at once.

Starts `imgorigin serve` on a free port with a config serving one zoo model (no score cache, so every good image
is inverted), then sends REQUESTS single-image /v1/verify requests from CONCURRENCY threads: distinct zoo samples
and real Fashion-MNIST test images (the shipped subset), and the malformed-upload corpus of the tests (zero bytes,
truncated, bit-flipped, wrong magic, GIF, decompression bomb, over the pixel and size caps; plus odd but readable
files: wrong extension, 16-bit, CMYK, animated). A 503 ``busy`` is retried after its Retry-After. Checks: every
good image answered with a record, every bad one refused with its JSON code, no 5xx other than 503, the server up
at the end. Prints p50/p95 latency, throughput and the server's peak RSS (VmHWM) as JSON.

    python benchmarks/serve_load.py [--requests 300] [--concurrency 8] [--model vae]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from imgorigin import zoo
from imgorigin.images import save_png
from imgorigin.zoo import data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_service import LIMITS, malformed_corpus  # noqa: E402  (the tests' corpus and the caps it is made for)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _good_images(model: str, n: int, folder: Path) -> list[tuple[str, bytes, str]]:
    """(name, PNG bytes, true source) for n/2 samples of the model and n/2 real test images, all distinct."""
    half = n // 2
    images = [("member", image) for image in zoo.sample(model, half, seed=123)]
    images += [("real", image) for image in data.subset_images()[: n - half]]
    out = []
    for i, (source, image) in enumerate(images):
        path = folder / f"{source}-{i:03d}.png"
        save_png(image, path)
        out.append((path.name, path.read_bytes(), source))
    return out


def _config(folder: Path, model: str) -> Path:
    limits = "\n".join(
        f"{name} = {getattr(LIMITS, name)}" for name in ("max_file_bytes", "max_request_bytes", "max_pixels")
    )
    path = folder / "serve.toml"
    path.write_text(
        f'device = "cpu"\nwork_dir = "work"\ncache_dir = ""\n[limits]\n{limits}\n'
        "rate_per_minute = 100000\nrate_burst = 100000\n"
        f'[[models]]\nid = "{model}"\nmodel = "zoo:{model}"\n'
    )
    return path


def _peak_rss_mib(pid: int) -> float:
    """The process's peak resident set size (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--model", default="vae", help="zoo model to serve (default vae)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="imgorigin-load-"))
    n_bad = args.requests // 3
    good = _good_images(args.model, args.requests - n_bad, folder)
    corpus = malformed_corpus(good[0][1])
    readable = [(name, data, "odd") for name, (data, status, code) in corpus.items() if code is None]
    bad = [(name, data, code, status) for name, (data, status, code) in corpus.items() if code is not None]
    work = [("good", *item) for item in good[: len(good) - len(readable)] + readable]
    work += [("bad", *bad[i % len(bad)]) for i in range(n_bad)]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(work))

    port = _free_port()
    log = (folder / "server.log").open("w")
    command = [sys.executable, "-c", "from imgorigin.cli import main; main()", "serve"]
    server = subprocess.Popen(
        [*command, "--config", str(_config(folder, args.model)), "--port", str(port), "--log-level", "warning"],
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"server exited: {(folder / 'server.log').read_text()}")
        time.sleep(0.2)

    results: list[dict] = []
    lock = threading.Lock()

    def one(item: tuple) -> None:
        kind, name, content = item[0], item[1], item[2]
        with httpx.Client(timeout=120) as client:
            retries = 0
            start = time.perf_counter()
            while True:
                response = client.post(
                    f"{base}/v1/verify", data={"model": args.model}, files=[("images", (name, content, "image/png"))]
                )
                if response.status_code != 503:
                    break
                retries += 1
                time.sleep(float(response.headers.get("retry-after", "1")))
            seconds = time.perf_counter() - start
        body = response.json()
        entry = {"kind": kind, "name": name, "status": response.status_code, "seconds": seconds, "retries": retries}
        if kind == "good":
            record = body.get("records", [{}])[0]
            entry.update(ok=response.status_code == 200 and "verdict" in record, verdict=record.get("verdict"))
            entry["source"] = item[3]
        else:
            code = body.get("error", {}).get("code")
            entry.update(ok=response.status_code == item[4] and code == item[3], code=code, expected=item[3])
        with lock:
            results.append(entry)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        list(pool.map(one, [work[i] for i in order]))
    wall = time.perf_counter() - start
    alive = httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    peak = _peak_rss_mib(server.pid)
    server.terminate()
    server.wait(30)

    def percentiles(kind: str) -> dict:
        times = sorted(r["seconds"] for r in results if kind in (r["kind"], "all"))
        q = statistics.quantiles(times, n=100, method="inclusive")
        return {"n": len(times), "p50_s": round(q[49], 3), "p95_s": round(q[94], 3), "max_s": round(times[-1], 3)}

    goods = [r for r in results if r["kind"] == "good"]
    summary = {
        "requests": len(results),
        "concurrency": args.concurrency,
        "model": f"zoo:{args.model}",
        "good_answered": f"{sum(r['ok'] for r in goods)}/{len(goods)}",
        "bad_refused_with_their_code": f"{sum(r['ok'] for r in results if r['kind'] == 'bad')}/{n_bad}",
        "statuses": {str(s): sum(r["status"] == s for r in results) for s in sorted({r["status"] for r in results})},
        "unexpected_5xx": sum(r["status"] >= 500 and r["status"] != 503 for r in results),
        "retried_after_503": sum(r["retries"] for r in results),
        "members_accepted": f"{sum(r['verdict'] == 'member' for r in goods if r['source'] == 'member')}/"
        f"{sum(r['source'] == 'member' for r in goods)}",
        "real_accepted": f"{sum(r['verdict'] == 'member' for r in goods if r['source'] == 'real')}/"
        f"{sum(r['source'] == 'real' for r in goods)}",
        "latency_all": percentiles("all"),
        "latency_good": percentiles("good"),
        "latency_bad": percentiles("bad"),
        "wall_s": round(wall, 1),
        "requests_per_s": round(len(results) / wall, 2),
        "server_peak_rss_mib": round(peak, 1),
        "server_up_after": alive,
        "wrong": [r for r in results if not r["ok"]][:10],
    }
    print(json.dumps(summary, indent=1))
    if not (alive and all(r["ok"] for r in results) and summary["unexpected_5xx"] == 0):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
