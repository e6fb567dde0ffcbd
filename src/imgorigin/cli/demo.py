"""``imgorigin demo``: the embedded default — shipped real images and zoo samples verified against two zoo models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgorigin.cli.common import DeviceOpt, progress_enabled, run_context
from imgorigin.cli.options import open_unit_interval
from imgorigin.labels import INCONCLUSIVE, INCONCLUSIVE_REASONS
from imgorigin.runtime import resolve_device

#: Models the demo verifies against, and the sources of its images (real + zoo samples).
DEMO_MODELS = ("dcgan", "vae")
DEMO_SOURCES = ("real", "dcgan", "dcgan-twin", "vae", "ldm")
DEMO_SEED = 7


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo images, records and report.")] = Path(
        "imgorigin-demo"
    ),
    per_source: Annotated[int, typer.Option(help="Images per source.")] = 4,
    alpha: Annotated[
        float, typer.Option(callback=open_unit_interval, help="Significance level of the decisions.")
    ] = 0.05,
    device: DeviceOpt = "auto",
) -> None:
    """Verify shipped real images and zoo samples against zoo:dcgan and zoo:vae: a table and an HTML report.

    Writes a few real Fashion-MNIST test images and zoo samples as PNG files, verifies them with the shipped
    calibrations, prints the verdicts and writes the records and a report into --out.
    """
    from rich.console import Console
    from rich.table import Table

    from imgorigin import zoo
    from imgorigin.images import save_png
    from imgorigin.records import RecordWriter
    from imgorigin.report import write_report
    from imgorigin.verification import Calibration, Verifier, default_calibration
    from imgorigin.zoo import data

    device = resolve_device(device)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    source_of: dict[str, str] = {}
    for source in DEMO_SOURCES:
        images = (
            data.subset_images()[:per_source]
            if source == "real"
            else zoo.sample(source, per_source, seed=DEMO_SEED, device=device)
        )
        for i, image in enumerate(images):
            path = images_dir / f"{source}_{i}.png"
            save_png(image.cpu(), path)
            source_of[str(path)] = source
    paths = sorted(source_of)
    sections, verdicts = [], {}
    for model in DEMO_MODELS:
        generator = zoo.load(model, device=device)
        calibration = Calibration.load(default_calibration(f"zoo:{model}"))
        verifier = Verifier(generator, calibration, alpha=alpha, cache_dir=None)
        with RecordWriter(out / f"results_{model}.jsonl", verifier.identity(), restart=True) as writer:
            records = []
            for record in verifier.verify_paths(paths, progress=progress_enabled()):
                writer.write(record)
                records.append(record)
        sections.append((f"zoo:{model}", calibration, records))
        verdicts[model] = {r["path"]: r for r in records}
    context = run_context(models=", ".join(f"zoo:{m}" for m in DEMO_MODELS), calibrations="shipped with the zoo")
    report = write_report(
        out / "report.html", sections, alpha, title="imgorigin demo", labels=source_of, context=context
    )

    table = Table(title=f"Did the model make this image? (α = {alpha})")
    table.add_column("image")
    table.add_column("true source")
    for model in DEMO_MODELS:
        table.add_column(f"zoo:{model}: verdict (p)")
    for path in paths:
        cells = []
        for model in DEMO_MODELS:
            r = verdicts[model].get(path, {"verdict": "error", "p_value": float("nan")})
            colour = {"member": "green", "non-member": "blue"}.get(r["verdict"], "yellow")
            cells.append(f"[{colour}]{r['verdict']}[/] ({r['p_value']:.3f})")
        table.add_row(Path(path).name, source_of[path], *cells)
    console = Console()
    console.print(table)
    reasons = {
        reason
        for by_path in verdicts.values()
        for r in by_path.values()
        if r.get("verdict") == INCONCLUSIVE
        for reason in r["reasons"]
        if reason in INCONCLUSIVE_REASONS
    }
    for reason in sorted(reasons):
        console.print(f"[yellow]inconclusive[/]: {reason}: {INCONCLUSIVE_REASONS[reason]}")
    console.print(f"records: {out}/results_*.jsonl   report: {report}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the ``demo`` command."""
    app.command()(demo)
