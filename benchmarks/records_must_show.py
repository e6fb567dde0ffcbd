"""The records issue's acceptance checks through the CLI, on the shipped zoo (see benchmarks/README.md).

1. kill -9 a 100-image `verify zoo:dcgan` at three moments and resume: every image once, no invalid line, scores
   equal to an uninterrupted run, records on disk after the first kill;
2. a fuzz corpus of 1000 generated malformed inputs through `verify` and `attribute`: exit status, one outcome
   per input, wall time and peak memory of each command;
3. an all-black and an all-white image against every zoo model that ships a calibration: the verdicts.
Prints one JSON line per check.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgorigin import zoo
from imgorigin.images import save_png
from imgorigin.records import read_records
from imgorigin.zoo.calibrations import NOT_CALIBRATED

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fuzz_corpus import make_corpus  # noqa: E402

CLI = [sys.executable, "-c", "from imgorigin.cli import main; main()"]


def timed(argv: list[str], env: dict) -> tuple[int, float, float]:
    """Exit status, wall seconds and peak RSS (MB, from GNU time) of one CLI run."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *CLI, *argv], env=env, capture_output=True, text=True)
    if "Traceback" in done.stderr:
        raise SystemExit(f"traceback from {argv}:\n{done.stderr[-3000:]}")
    return done.returncode, time.perf_counter() - start, int(done.stderr.strip().splitlines()[-1]) / 1024


def kills(work: Path, env: dict) -> dict:
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate([*zoo.sample("dcgan", 50, seed=77), *zoo.sample("vae", 50, seed=78)]):
        save_png(image, images / f"{i:03d}.png")
    out, clean = work / "killed.jsonl", work / "clean.jsonl"
    argv = ["verify", "zoo:dcgan", str(images), "-o", str(out), "--cache-dir", str(work / "cache")]
    rng, after_kill = random.Random(0), []
    for moment in sorted(rng.uniform(3, 12) for _ in range(3)):
        child = subprocess.Popen([*CLI, *argv], env=env, stderr=subprocess.DEVNULL)
        time.sleep(moment)
        child.send_signal(signal.SIGKILL)
        child.wait()
        lines = out.read_bytes().splitlines() if out.exists() else []
        after_kill.append({"killed_at_s": round(moment, 1), "records": len(read_records(out)) if lines else 0})
    subprocess.run([*CLI, *argv], env=env, check=True, capture_output=True)
    subprocess.run(
        [*CLI, "verify", "zoo:dcgan", str(images), "-o", str(clean), "--cache-dir", str(work / "cache-clean")],
        env=env,
        check=True,
        capture_output=True,
    )
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]  # raises on an invalid line
    resumed = {r["path"]: r for r in lines[1:]}
    uninterrupted = {r["path"]: r for r in read_records(clean)}
    gap = max(abs(r["score"] - uninterrupted[p]["score"]) / uninterrupted[p]["score"] for p, r in resumed.items())
    return {
        "check": "kill -9 three times, then resume",
        "after_each_kill": after_kill,
        "lines": len(lines) - 1,
        "distinct_paths": len(resumed),
        "same_verdicts": all(r["verdict"] == uninterrupted[p]["verdict"] for p, r in resumed.items()),
        "largest_relative_score_difference": gap,
    }


def fuzz(work: Path, env: dict) -> dict:
    corpus = work / "corpus"
    made = make_corpus(corpus, n=1000, seed=0)
    train = work / "train"
    for name in ("dcgan", "vae"):
        (train / name).mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(zoo.sample(name, 10, seed=5)):
            save_png(image, train / name / f"{i}.png")
    cache = ["--cache-dir", str(work / "cache")]
    subprocess.run([*CLI, "fit", str(train), "-o", str(work / "clf"), *cache], env=env, check=True, capture_output=True)
    results = {"check": "fuzz corpus", "inputs": len(made)}
    for name, argv in (
        ("verify", ["verify", "zoo:vae", str(corpus), "-o", str(work / "fuzz-verify.jsonl"), *cache]),
        ("attribute", ["attribute", str(work / "clf"), str(corpus), "-o", str(work / "fuzz-attribute.jsonl"), *cache]),
    ):
        code, seconds, peak = timed(argv, env)
        lines = [json.loads(line) for line in Path(argv[4]).read_bytes().decode("utf-8").splitlines()]
        records = lines[1:]
        results[name] = {
            "exit": code,
            "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak),
            "lines": len(records),
            "distinct_paths": len({r["path"] for r in records}),
            "results": sum("error" not in r and "skipped" not in r for r in records),
            "errors": sum("error" in r for r in records),
            "skipped": sum("skipped" in r for r in records),
        }
    return results


def flat(work: Path, env: dict) -> dict:
    folder = work / "flat"
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in (("black", 0), ("white", 255)):
        Image.fromarray(np.full((28, 28), value, np.uint8)).save(folder / f"{name}.png")
    verdicts = {}
    for model in (m for m in zoo.list_models() if m not in NOT_CALIBRATED):
        out = work / f"flat-{model}.jsonl"
        subprocess.run(
            [*CLI, "verify", f"zoo:{model}", str(folder), "-o", str(out), "--restart"],
            env=env,
            check=True,
            capture_output=True,
        )
        verdicts[model] = {Path(r["path"]).stem: r["verdict"] for r in read_records(out)}
    return {"check": "all-black and all-white images", "verdicts": verdicts}


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/records-must-show")
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "IMGORIGIN_CACHE": str(work / "cache")}
    for check in (kills, fuzz, flat):
        print(json.dumps(check(work / check.__name__, env)), flush=True)


if __name__ == "__main__":
    main()
