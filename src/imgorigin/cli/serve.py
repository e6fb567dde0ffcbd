"""``imgorigin serve``: the HTTP service and the analysts' page (a thin shell over imgorigin.service)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgorigin.errors import UsageError

#: Addresses only this machine reaches: serving on them without API keys is fine.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def serve(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML file naming the models, classifiers, limits and API keys to serve (default: the shipped zoo "
            "models as zoo:NAME with their shipped calibrations, keys from $IMGORIGIN_API_KEYS).",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (keep 127.0.0.1 unless API keys are set).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error (JSON lines on stderr).")] = "info",
    print_example: Annotated[bool, typer.Option("--print-example", help="Print an example config and exit.")] = False,
) -> None:
    """Serve verification and attribution over HTTP (/v1, OpenAPI at /v1/openapi.json) with a web page at /."""
    try:
        import uvicorn

        from imgorigin.service import create_app, default_config, load_config
        from imgorigin.service.config import EXAMPLE
        from imgorigin.service.logs import configure
    except ImportError as err:
        raise UsageError(f"imgorigin serve needs the serve extra: pip install 'imgorigin[serve]' ({err})") from None
    if print_example:
        typer.echo(EXAMPLE, nl=False)
        return
    settings = load_config(config) if config is not None else default_config()
    if not settings.keys and host not in LOOPBACK:
        typer.echo(f"warning: no API keys are configured and {host} is reachable from other machines", err=True)
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_config=configure(log_level),
        access_log=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=10,
    )


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add the ``serve`` command."""
    app.command()(serve)
