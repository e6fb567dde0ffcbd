"""``imgorigin calibrate`` and ``imgorigin verify``: model verification by input reverse-engineering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from imgorigin.batch import run_batch
from imgorigin.cli.common import DeviceOpt, RestartOpt, echo, fail, progress_enabled, run_context
from imgorigin.cli.options import DetailAlphaOpt, detail_level, open_unit_interval, settings_options
from imgorigin.records import read_records
from imgorigin.runtime import default_cache_dir, resolve_device
from imgorigin.verification import Calibration, InversionConfig, Verifier, default_calibration, load_generator
from imgorigin.verification import calibrate as run_calibration
from imgorigin.verification.detail import DEFAULT_ALPHA as DEFAULT_DETAIL_ALPHA

MODEL_HELP = (
    "The generator: zoo:NAME (shipped zoo), a TorchScript file (forward(z) in [-1, 1], attribute "
    "latent_shape), a diffusers model/pipeline directory, hf:ORG/NAME from the offline cache, or a "
    "package.module:function factory."
)

#: Heading of the generated InversionConfig options in `imgorigin calibrate --help`.
INVERSION_PANEL = "Inversion settings (stored in the calibration file, reused by verify)"


def calibrate(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Calibration file to write (JSON).")],
    samples: Annotated[
        int, typer.Option("--samples", "-n", min=2, help="How many of the model's own images to invert.")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seed for sampling the model and for inversion restarts.")] = 0,
    from_images: Annotated[
        list[Path] | None,
        typer.Option(
            "--from-images",
            help="Use these saved samples of the model (files or folders) instead of sampling it; "
            "for models that cannot be sampled here (e.g. text-to-image pipelines).",
        ),
    ] = None,
    reference_real: Annotated[
        list[Path] | None,
        typer.Option(
            "--reference-real", help="Real images (files or folders) to score too, stored for the second p-value."
        ),
    ] = None,
    ddim_steps: Annotated[int | None, typer.Option(help="DDIM steps for pixel-diffusion models.")] = None,
    device: DeviceOpt = "auto",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Score cache folder (default $IMGORIGIN_CACHE or ~/.cache/imgorigin).")
    ] = None,
    *,
    inversion: InversionConfig,
) -> None:
    """Invert N images the model itself generates and write their scores: the model's belonging distribution.

    The inversion settings are stored in the file and reused by `verify`, so scores stay comparable.
    """
    generator = load_generator(model, device=resolve_device(device), ddim_steps=ddim_steps)
    calibration = run_calibration(
        generator,
        samples,
        config=inversion,
        seed=seed,
        sample_dir=from_images,
        reference_real=reference_real,
        cache_dir=cache_dir or default_cache_dir(),
        progress=progress_enabled(),
    )
    calibration.save(out)
    s = calibration.scores
    typer.echo(
        f"calibrated {generator.id} on {s.size} images: score median {float(s[s.size // 2]):.3g}, "
        f"95th percentile {calibration.threshold(0.05):.3g} -> {out}",
        err=True,
    )


def verify(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    paths: Annotated[list[Path], typer.Argument(help="Images or folders (searched recursively).")],
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration",
            "-c",
            help="File written by `imgorigin calibrate` for this model (zoo models: the shipped one by default).",
        ),
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(
            callback=open_unit_interval,
            help="Significance level: at most this fraction of the model's own images is rejected.",
        ),
    ] = 0.05,
    reference_real: Annotated[
        list[Path] | None,
        typer.Option(
            "--reference-real",
            help="Real images (files or folders): adds p_value_real and the 'inconclusive' "
            "verdict for images that real images explain as well.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="JSON-lines file (default: stdout). An existing file of the same run (model, calibration, alpha) "
            "is resumed: answered images are skipped; another run's file is refused.",
        ),
    ] = None,
    restart: RestartOpt = False,
    report: Annotated[
        Path | None,
        typer.Option(help="Also write an HTML report (operating point, score plot, one row per image) to this file."),
    ] = None,
    detail_alpha: DetailAlphaOpt = DEFAULT_DETAIL_ALPHA,
    device: DeviceOpt = "auto",
    cache_dir: Annotated[Path | None, typer.Option(help="Score cache folder.")] = None,
) -> None:
    """Decide for each image whether MODEL generated it; one JSON record per image.

    Exit status: 0 when every image was scored, 1 when some could not be read (their records hold "error"),
    2 for a usage or configuration error. Files left out of folders get a "skipped" record.
    """
    generator = load_generator(model, device=resolve_device(device))
    calibration_file = calibration or default_calibration(model)
    cal = Calibration.load(calibration_file)
    verifier = Verifier(
        generator, cal, alpha=alpha, cache_dir=cache_dir or default_cache_dir(), detail_alpha=detail_level(detail_alpha)
    )
    if reference_real:
        n = verifier.add_reference_real(reference_real, progress=progress_enabled())
        echo(f"scored {n} reference real images")
        if 1 / (n + 1) > alpha:
            echo(
                f"warning: with {n} reference images no image can be told apart from real ones at "
                f"alpha={alpha}; give at least {int(1 / alpha)}"
            )
    streamed: list[dict] = []  # the report's records when they go to stdout and cannot be read back

    def decide(files: list[Path]) -> Iterator[dict]:
        for record in verifier.verify_paths(files, progress=progress_enabled()):
            if output is None and report is not None:
                streamed.append(record)
            yield record

    summary = run_batch(paths, decide, output=output, identity=verifier.identity(), restart=restart, log=echo)
    if report is not None:
        from imgorigin.report import write_report

        context = run_context(model=generator.id, calibration=f"{calibration_file} (sha256 {cal.digest()[:16]})")
        records = read_records(output) if output else streamed
        write_report(report, [(generator.id, cal, records)], alpha, context=context)
        echo(f"report: {report}")
    echo(summary.line())
    raise typer.Exit(summary.exit_code)


def bench_verify(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.json, results.md and figures.")] = Path(
        "runs/bench-verify"
    ),
    models: Annotated[str, typer.Option(help="Comma-separated zoo models to invert (default: all).")] = "",
    n_cal: Annotated[int, typer.Option(help="Calibration samples per model.")] = 100,
    n_members: Annotated[int, typer.Option(help="Fresh member samples per model (never the calibration ones).")] = 100,
    n_real: Annotated[int, typer.Option(help="Real Fashion-MNIST test images.")] = 100,
    n_other: Annotated[int, typer.Option(help="Samples of each other zoo model.")] = 50,
    alpha: Annotated[float, typer.Option(callback=open_unit_interval, help="Level of the conformal decision.")] = 0.05,
    reference_model: Annotated[
        str, typer.Option(help="Zoo model on which to time the per-image reference loop ('' to skip).")
    ] = "dcgan",
    n_reference: Annotated[int, typer.Option(help="Members and real images each for the reference loop.")] = 20,
    device: DeviceOpt = "auto",
) -> None:
    """Verification benchmark on the zoo: AUROC, TPR@1%FPR, accuracy at alpha and speed, per model pair."""
    from imgorigin import zoo
    from imgorigin.benchmarks.verification import run

    names = [m for m in models.split(",") if m] or zoo.list_models()
    for name in names:
        if name not in zoo.list_models():
            fail(f"unknown zoo model {name!r}")
    run(
        names,
        out,
        n_cal=n_cal,
        n_members=n_members,
        n_real=n_real,
        n_other=n_other,
        alpha=alpha,
        config=None,
        reference_model=reference_model or None,
        n_reference=n_reference,
        device=resolve_device(device),
        log=lambda m: typer.echo(m, err=True),
    )
    typer.echo((out / "results.md").read_text())


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the verification commands to the CLI."""
    app.command()(settings_options(InversionConfig, into="inversion", panel=INVERSION_PANEL)(calibrate))
    app.command()(verify)
    bench_app.command("verify")(bench_verify)
