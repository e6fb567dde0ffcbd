"""``imgorigin calibrate`` and ``imgorigin verify``: model verification by input reverse-engineering, or by the
training-free fast path (double reconstruction) for models with an encoder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from imgorigin.batch import run_batch
from imgorigin.benchmarks.verification import SCORES as BENCH_SCORES
from imgorigin.cli.common import DeviceOpt, RestartOpt, echo, fail, progress_enabled, run_context
from imgorigin.cli.engine import EngineConfig, engine_options, expand_manifests
from imgorigin.cli.options import DetailAlphaOpt, detail_level, open_unit_interval, settings_options
from imgorigin.records import read_records
from imgorigin.runtime import default_cache_dir, resolve_device
from imgorigin.verification import Calibration, InversionConfig, Verifier, default_calibration, load_generator
from imgorigin.verification import calibrate as run_calibration
from imgorigin.verification.detail import DEFAULT_ALPHA as DEFAULT_DETAIL_ALPHA
from imgorigin.verification.fastpath import FastConfig
from imgorigin.verification.initializer import InitializerConfig
from imgorigin.verification.profile import PROFILE
from imgorigin.verification.retries import MAX_AUTO_RETRIES
from imgorigin.verification.verifier import SCREEN_SHARE

MODEL_HELP = (
    "The generator: zoo:NAME (shipped zoo), a TorchScript file (forward(z) in [-1, 1], attribute "
    "latent_shape), a diffusers model/pipeline directory, hf:ORG/NAME from the offline cache, or a "
    "package.module:function factory."
)

#: Heading of the generated InversionConfig options in `imgorigin calibrate --help`.
INVERSION_PANEL = "Inversion settings (stored in the calibration file, reused by verify)"

CalibrationMethod = Enum(
    "CalibrationMethod", {"inversion": "inversion", "fast": "fast", "profile": "profile"}, type=str
)
VerifyMethod = Enum(
    "VerifyMethod", {"auto": "auto", "inversion": "inversion", "fast": "fast", "screen": "screen"}, type=str
)


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
    method: Annotated[
        CalibrationMethod,
        typer.Option(
            help="inversion: invert each image (any model). fast: AEDR's double-reconstruction score, no "
            "optimisation (models with an encoder). profile: the denoising profile of a pixel diffusion model "
            "(its UNet's noise-prediction errors and DDIM-inverted x_T, no optimisation; fitted on 60 % of the "
            "samples, the other 40 % calibrate). A fast or profile file decides only its own score (verify "
            "--method fast, or screen), and the inversion settings below are not used."
        ),
    ] = CalibrationMethod.inversion,
    no_homogeneity: Annotated[
        bool, typer.Option("--no-homogeneity", help="fast: leave out the GLCM homogeneity factor.")
    ] = False,
    auto_retries: Annotated[
        int,
        typer.Option(
            min=0,
            help="Choose --retries from the samples: invert those above --retry-above again from fresh starts, "
            "round after round, until ten attempts in a row rescue none, at most this many rounds; never fewer "
            "than --retries (0: use --retries as given).",
        ),
    ] = MAX_AUTO_RETRIES,
    no_learned_init: Annotated[
        bool,
        typer.Option(
            "--no-learned-init",
            help="Keep --init auto's search starts. Without it, a model with no encoder whose latent the refinement "
            "handles (a GAN) gets a small network, trained on its own samples, that predicts latents; each "
            "inversion starts there (stored in the file: its own samples' basins are found far more often).",
        ),
    ] = False,
    init_steps: Annotated[
        int, typer.Option(min=1, help="Training steps of the learned initialiser (128 samples each).")
    ] = InitializerConfig().steps,
    device: DeviceOpt = "auto",
    cache_dir: Annotated[
        Path | None, typer.Option(help="Score cache folder (default $IMGORIGIN_CACHE or ~/.cache/imgorigin).")
    ] = None,
    *,
    inversion: InversionConfig,
) -> None:
    """Score N images the model itself generates and write their scores: the model's belonging distribution.

    The settings are stored in the file and reused by `verify`, so scores stay comparable.
    """
    generator = load_generator(model, device=resolve_device(device), ddim_steps=ddim_steps)
    config = {
        CalibrationMethod.fast: FastConfig(homogeneity=not no_homogeneity),
        CalibrationMethod.profile: FastConfig(score=PROFILE),
    }.get(method, inversion)
    calibration = run_calibration(
        generator,
        samples,
        config=config,
        seed=seed,
        sample_dir=from_images,
        reference_real=reference_real,
        cache_dir=cache_dir or default_cache_dir(),
        progress=progress_enabled(),
        auto_retries=auto_retries,
        learned_init=not no_learned_init,
        initializer=InitializerConfig(steps=init_steps),
    )
    calibration.save(out)
    if calibration.initializer_training is not None:
        typer.echo(
            f"learned initialiser: {calibration.initializer_training['steps']} steps in "
            f"{calibration.initializer_training['seconds']:g} s; inversion starts from its latents",
            err=True,
        )
    s = calibration.scores
    if calibration.retry_search is not None:
        failed = ", ".join(f"{100 * f:.1f} %" for f in calibration.retry_search["failed_after_attempt"])
        typer.echo(
            f"retries: {calibration.inversion.retries} chosen (samples above --retry-above "
            f"{calibration.inversion.retry_above:g} after each attempt: {failed})",
            err=True,
        )
    typer.echo(
        f"calibrated {generator.id} ({calibration.method}) on {s.size} images: "
        f"score median {float(s[s.size // 2]):.3g}, "
        f"95th percentile {calibration.threshold(0.05):.3g} -> {out}",
        err=True,
    )


def verify(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Images, folders (searched recursively) or @FILE: a manifest of paths (text, .csv, .parquet)."
        ),
    ],
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration",
            "-c",
            help="File written by `imgorigin calibrate` for this model (zoo models: the shipped one by default); "
            "with --method fast, a fast calibration (`imgorigin calibrate MODEL --method fast`).",
        ),
    ] = None,
    method: Annotated[
        VerifyMethod,
        typer.Option(
            help="auto: the calibration's own (inversion, or its fast score). inversion: invert every image. "
            "fast: the calibration's training-free score only (double reconstruction for models with an "
            "encoder, or a pixel diffusion model's denoising profile; milliseconds per image). screen: the fast "
            "score first; images it rejects at --screen-reject are non_member, the rest are inverted and decided "
            "at alpha minus that level."
        ),
    ] = VerifyMethod.auto,
    fast_calibration: Annotated[
        Path | None,
        typer.Option(help="screen: the fast calibration (`imgorigin calibrate MODEL --method fast`)."),
    ] = None,
    screen_reject: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help=f"screen: fast p-values at or below this are non_member without inversion (default alpha x "
            f"{SCREEN_SHARE}); the inversion decides the rest at alpha minus it, so at most alpha of the model's "
            "own images are rejected in all.",
        ),
    ] = None,
    screen_accept: Annotated[
        float | None,
        typer.Option(
            max=1.0,
            help="screen: fast p-values above this are decided by the fast score without inversion (default: "
            "never; every image the fast score does not reject is inverted).",
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
    *,
    engine: EngineConfig,
) -> None:
    """Decide for each image whether MODEL generated it; one JSON record per image.

    Exit status: 0 when every image was scored, 1 when some could not be read (their records hold "error"),
    2 for a usage or configuration error. Files left out of folders get a "skipped" record.
    """
    if method == VerifyMethod.fast and calibration is None:
        fail(f"--method fast needs --calibration: make one with `imgorigin calibrate {model} --method fast --out FILE`")
    if method == VerifyMethod.screen and fast_calibration is None:
        fail(
            f"--method screen needs --fast-calibration: make one with `imgorigin calibrate {model} --method fast "
            "--out FILE`"
        )
    if method != VerifyMethod.screen and (fast_calibration or screen_reject is not None or screen_accept is not None):
        fail("--fast-calibration, --screen-reject and --screen-accept belong to --method screen")
    calibration_file = calibration or default_calibration(model)
    cal = Calibration.load(calibration_file)
    generator = load_generator(model, device=resolve_device(device), sampler=cal.sampler)
    if method == VerifyMethod.auto:
        method = VerifyMethod.fast if cal.is_fast else VerifyMethod.inversion
    verifier = Verifier(
        generator,
        cal,
        alpha=alpha,
        cache_dir=cache_dir or default_cache_dir(),
        detail_alpha=detail_level(detail_alpha),
        method=method.value,
        fast_calibration=None if fast_calibration is None else Calibration.load(fast_calibration),
        screen_reject=screen_reject,
        screen_accept=screen_accept,
    )
    if reference_real:
        n = verifier.add_reference_real(reference_real, progress=progress_enabled())
        echo(f"scored {n} reference real images")
        if 1 / (n + 1) > alpha:
            echo(
                f"warning: with {n} reference images no image can be told apart from real ones at "
                f"alpha={alpha}; give at least {int(1 / alpha)}"
            )
    if verifier.fast_calibration is not None and verifier.screen_reject is not None:
        n_fast = verifier.fast_calibration.scores.size
        if 1 / (n_fast + 1) > verifier.screen_reject:
            echo(
                f"warning: with {n_fast} fast calibration samples no fast p-value reaches --screen-reject "
                f"{verifier.screen_reject:g}: every image is inverted; calibrate with at least "
                f"{int(1 / verifier.screen_reject)} samples"
            )
    streamed: list[dict] = []  # the report's records when they go to stdout and cannot be read back

    from imgorigin.distributed.jobs import path_text, verifier_job

    records = engine.decide(
        lambda files: verifier.verify_paths(files, progress=progress_enabled()),
        lambda: verifier_job(verifier, model, device=device, cache_dir=path_text(cache_dir)),
        progress=progress_enabled(),
    )

    def decide(files: list[Path]) -> Iterator[dict]:
        for record in records(files):
            if output is None and report is not None:
                streamed.append(record)
            yield record

    began = time.perf_counter()
    summary = run_batch(
        expand_manifests(paths), decide, output=output, identity=verifier.identity(), restart=restart, log=echo
    )
    elapsed = time.perf_counter() - began
    if report is not None:
        from imgorigin.report import write_report

        context = run_context(model=generator.id, calibration=f"{calibration_file} (sha256 {cal.digest()[:16]})")
        records = read_records(output) if output else streamed
        write_report(report, [(generator.id, cal, records)], alpha, context=context)
        echo(f"report: {report}")
    if engine.finish(output) is not None:
        echo(f"parquet: {engine.parquet}")
    echo(summary.line())
    # with Ray the per-stage counts of --method fast/screen stay on the workers
    if method != VerifyMethod.inversion and engine.engine == "local":
        echo(screen_line(verifier.stats, elapsed))
    raise typer.Exit(summary.exit_code)


def screen_line(stats: dict, seconds: float) -> str:
    """The fast and screen runs' extra summary line: images per stage, the share inverted, images/s."""
    n = stats["fast"] + stats["inversion"]
    rate = f"{n / seconds:.1f} images/s" if seconds > 0 else "n/a images/s"
    share = f" ({stats['inversion'] / n:.1%})" if n else ""
    return (
        f"{stats['fast']} decided by the fast score, {stats['inversion']} of {n} reached the inversion{share}; "
        f"{n} in {seconds:.1f} s = {rate}"
    )


def bench_verify(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.json, results.md and figures.")] = Path(
        "runs/bench-verify"
    ),
    models: Annotated[str, typer.Option(help="Comma-separated zoo models to invert (default: all).")] = "",
    n_cal: Annotated[int, typer.Option(help="Calibration samples per model.")] = 100,
    n_members: Annotated[int, typer.Option(help="Fresh member samples per model (never the calibration ones).")] = 100,
    n_real: Annotated[
        int, typer.Option(help="Real images: Fashion-MNIST test images (colour models: held-out photo crops).")
    ] = 100,
    n_other: Annotated[int, typer.Option(help="Samples of each other zoo model of the same image shape.")] = 50,
    alpha: Annotated[float, typer.Option(callback=open_unit_interval, help="Level of the conformal decision.")] = 0.05,
    reference_model: Annotated[
        str, typer.Option(help="Zoo model on which to time the per-image reference loop ('' to skip).")
    ] = "dcgan",
    n_reference: Annotated[int, typer.Option(help="Members and real images each for the reference loop.")] = 20,
    scores: Annotated[
        str,
        typer.Option(
            help="Comma-separated scores to measure (default: every one that applies to each model): "
            + ", ".join(BENCH_SCORES)
            + ". complexity and 'ddim-inversion (inverted z)' need raw."
        ),
    ] = "",
    device: DeviceOpt = "auto",
) -> None:
    """Verification benchmark on the zoo: AUROC, TPR@1%FPR, accuracy at alpha and speed, per model pair and score
    (raw inversion, complexity, the AEDR fast score, the latent diffusion models' UNet scores and the pixel
    diffusion models' denoising profile)."""
    from imgorigin import zoo
    from imgorigin.benchmarks.verification import check_scores, run

    names = [m for m in models.split(",") if m] or zoo.list_models()
    for name in names:
        if name not in zoo.list_models():
            fail(f"unknown zoo model {name!r}")
    chosen = tuple(s.strip() for s in scores.split(",") if s.strip()) or BENCH_SCORES
    try:
        check_scores(chosen)
    except ValueError as exc:
        fail(f"--scores: {exc}")
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
        scores=chosen,
    )
    typer.echo((out / "results.md").read_text())


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the verification commands to the CLI."""
    app.command()(settings_options(InversionConfig, into="inversion", panel=INVERSION_PANEL)(calibrate))
    app.command()(engine_options(verify))
    bench_app.command("verify")(bench_verify)
