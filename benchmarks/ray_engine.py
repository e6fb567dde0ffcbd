"""Measurements of the Ray engine behind docs/ray.md: tiny-image manifests, peak memory of a run's processes.

    python benchmarks/ray_engine.py images 100000 runs/ray-bench/images   # N tiny PNGs + manifest.txt beside them
    python benchmarks/ray_engine.py memory -- imgorigin attribute CLF @runs/ray-bench/images/manifest.txt ...

``memory`` runs the command and samples every process it starts (the driver, and with a local Ray cluster the
raylet, GCS and worker processes under it) every 0.2 s from /proc: it prints one JSON line with the wall time,
the driver's peak RSS (the kernel's VmHWM), the largest peak of any Ray worker process, and the largest sum of
RSS over the whole process tree at one sample. Linux only; public tools only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(n: int, folder: Path, size: int = 16, seed: int = 0) -> Path:
    """N distinct tiny greyscale PNGs in sub-folders of 1000, and ``manifest.txt`` listing them (absolute)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.txt"
    with manifest.open("w") as listing:
        for i in range(n):
            shard = folder / f"{i // 1000:04d}"
            shard.mkdir(exist_ok=True)
            path = shard / f"{i:07d}.png"
            if not path.exists():
                pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
                Image.fromarray(pixels, "L").save(path)
            listing.write(f"{path.absolute()}\n")
    return manifest


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process in bytes (empty when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry))
    return tree


def _descendants(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return ""


def measure(command: list[str], interval: float = 0.2) -> dict:
    """Run ``command``; peak memory of the driver, of any Ray worker, and of the whole tree at one sample."""
    start = time.monotonic()
    child = subprocess.Popen(command)
    peaks: dict[int, int] = {}
    names: dict[int, str] = {}
    tree_peak = 0
    while child.poll() is None:
        total = 0
        for pid in _descendants(child.pid):
            status = _status(pid)
            if not status:
                continue
            total += status.get("VmRSS", 0)
            peaks[pid] = max(peaks.get(pid, 0), status.get("VmHWM", 0))
            names[pid] = _name(pid) or names.get(pid, "")  # workers rename themselves ray::...
        tree_peak = max(tree_peak, total)
        time.sleep(interval)
    wall = time.monotonic() - start
    workers = {pid: peak for pid, peak in peaks.items() if "MapWorker" in names[pid] and pid != child.pid}
    mib = 2**20
    return {
        "command": command,
        "returncode": child.returncode,
        "wall_s": round(wall, 1),
        "driver_peak_mib": round(peaks.get(child.pid, 0) / mib, 1),
        "worker_peak_mib": round(max(workers.values(), default=0) / mib, 1),
        "workers": len(workers),
        "ray_processes_peak_mib": {
            names[pid].split()[0][:40]: round(peak / 2**20, 1)
            for pid, peak in sorted(peaks.items(), key=lambda item: -item[1])[:8]
        },
        "tree_peak_mib": round(tree_peak / mib, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    images = sub.add_parser("images", help="write N tiny PNGs and their manifest")
    images.add_argument("n", type=int)
    images.add_argument("folder", type=Path)
    memory = sub.add_parser("memory", help="run a command and print its processes' peak memory")
    memory.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.what == "images":
        print(make_images(args.n, args.folder))
    else:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        print(json.dumps(measure(command)), flush=True)
        sys.exit(0)


if __name__ == "__main__":
    main()
