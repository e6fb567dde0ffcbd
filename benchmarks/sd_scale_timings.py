"""SD-scale timings: the fast path and decoder inversion on a Stable-Diffusion-sized ``AutoencoderKL``.

The autoencoder has Stable Diffusion's published configuration (3 → 4 latent channels, block widths
128/256/512/512, 2 layers per block, 32 norm groups, SiLU, scaling factor 0.18215) with random weights (seeded:
timing does not depend on the weights), wrapped by the project's adapter
(:class:`imgorigin.verification.generators.autoencoder.AutoencoderGenerator`). Per image size and method, in a
fresh subprocess each (so that the peak resident memory is that case's alone):

* ``fast``: :func:`imgorigin.verification.fastpath.double_reconstruction` on one image (2 encodes + 2 decodes);
* ``inversion``: the project's :class:`~imgorigin.verification.inversion.Inverter`, encoder initialisation, one
  restart, a fixed budget of ``--steps`` Adam steps (no early stop; the refinement does not apply to latents this
  large); per step = (total − one encoder pass) / steps.

Peak memory is the subprocess's peak RSS (``resource.getrusage``, includes the Python + torch runtime and the
weights; ``rss_before_mib`` is the RSS once the model is built, before the measured work). Torch's allocations do
not go through ``tracemalloc``, so it is not used. Wall times on a shared machine are upper bounds.

    nice -n 10 python benchmarks/sd_scale_timings.py --sizes 256,512 --steps 3 --out runs/sd-scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

SD_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "scaling_factor": 0.18215,
}


def rss_mib() -> float:
    """Current resident set size of this process (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cpu_seconds() -> float:
    """User + system CPU time of this process so far: less sensitive than wall time to other jobs on the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(size: int):
    import torch
    from diffusers import AutoencoderKL

    from imgorigin.verification.generators.autoencoder import AutoencoderGenerator

    torch.manual_seed(0)
    vae = AutoencoderKL(sample_size=size, **SD_VAE_CONFIG)
    return AutoencoderGenerator(vae, id=f"sd-vae-random-{size}")


def run_case(size: int, method: str, steps: int, threads: int) -> dict:
    """One measurement, in this process (called in a subprocess by :func:`main`)."""
    import torch

    from imgorigin.verification.fastpath import double_reconstruction
    from imgorigin.verification.inversion import InversionConfig, Inverter

    torch.set_num_threads(threads)
    began = time.perf_counter()
    gen = build(size)
    build_seconds = time.perf_counter() - began
    params = sum(p.numel() for p in gen.vae.parameters())
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    rss_before = rss_mib()
    cpu_before = cpu_seconds()
    out = {"size": size, "method": method, "threads": threads, "parameters": params, "build_seconds": build_seconds}
    if method == "fast":
        began = time.perf_counter()
        scores = double_reconstruction(gen, image)
        out["seconds_per_image"] = time.perf_counter() - began
        out["score"] = float(scores.scores[0])
    else:
        with torch.no_grad():
            began = time.perf_counter()
            gen.encode(image)
            encode_seconds = time.perf_counter() - began
        config = InversionConfig(
            steps=steps, restarts=1, init="encoder", patience=steps + 1, prune_after=0, refine_steps=0, batch_size=1
        )
        result = Inverter(gen, config)(image, keys=["timing"])
        out.update(
            steps=int(result.steps[0]),
            seconds_per_image=result.seconds,
            encode_seconds=encode_seconds,
            seconds_per_step=(result.seconds - encode_seconds) / max(1, int(result.steps[0])),
            score=float(result.scores[0]),
        )
    out["cpu_seconds"] = cpu_seconds() - cpu_before
    out["rss_before_mib"] = rss_before
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def markdown(rows: list[dict], steps: int) -> str:
    lines = [
        "| size | method | s/image (wall) | s/step (wall) | CPU s/image | peak RSS (MiB) | RSS after build (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        label = "fast (2 × encode + decode)" if r["method"] == "fast" else f"inversion, {r['steps']} Adam steps"
        per_step = f"{r['seconds_per_step']:.2f}" if "seconds_per_step" in r else "–"
        cpu = f"{r['cpu_seconds']:.1f}" if "cpu_seconds" in r else "–"
        lines.append(
            f"| {r['size']}×{r['size']} | {label} | {r['seconds_per_image']:.2f} | {per_step} | {cpu} | "
            f"{r['peak_rss_mib']:.0f} | {r['rss_before_mib']:.0f} |"
        )
    by = {(r["size"], r["method"]): r for r in rows}
    for size in sorted({r["size"] for r in rows}):
        if (size, "fast") in by and (size, "inversion") in by:
            step = by[(size, "inversion")]["seconds_per_step"]
            fast = by[(size, "fast")]["seconds_per_image"]
            lines.append(
                f"\n{size}×{size}: one inversion step costs {step / fast:.2f}× the whole fast path; a 100-step "
                f"inversion (LatentTracer's budget) would take ~{100 * step:.0f} s, {100 * step / fast:.0f}× the fast "
                "path (extrapolated from the measured per-step time)."
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--methods", default="fast,inversion")
    parser.add_argument("--steps", type=int, default=10, help="Adam steps of the inversion (fixed, no early stop)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/sd-scale-timings.json"))
    parser.add_argument("--case", help=argparse.SUPPRESS)  # SIZE:METHOD, run in this process (internal)
    args = parser.parse_args()
    if args.case:
        size, method = args.case.split(":")
        print(json.dumps(run_case(int(size), method, args.steps, args.threads)))
        return
    rows = []
    for size in map(int, args.sizes.split(",")):
        for method in args.methods.split(","):
            command = [sys.executable, __file__, "--case", f"{size}:{method}", "--steps", str(args.steps)]
            command += ["--threads", str(args.threads)]
            began = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["process_wall_seconds"] = time.perf_counter() - began
            rows.append(row)
            print(
                f"{size} {method}: {row['seconds_per_image']:.2f} s/image, peak {row['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus_visible": os.cpu_count(),
        "threads": args.threads,
        "python": platform.python_version(),
    }
    try:
        import diffusers
        import torch

        machine.update(torch=torch.__version__, diffusers=diffusers.__version__, cuda=torch.cuda.is_available())
    except ImportError:
        pass
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": SD_VAE_CONFIG, "machine": machine, "rows": rows}, indent=1) + "\n")
    print(markdown(rows, args.steps))


if __name__ == "__main__":
    main()
