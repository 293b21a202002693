"""`mdstudio serve`: the HTTP API, the console and the metrics."""

from __future__ import annotations

import os
import sys

import click

from mdstudio_core.entrypoints.cli.plumbing import cli, runtime

METRICS_OFF = (
    "mdstudio serve: metrics are off (/metrics answers 404). To turn them on, set "
    "MDSTUDIO_METRICS_TOKEN to a long random secret and have Prometheus send it as a bearer "
    "token (see deploy/prometheus/prometheus.yml)."
)
METRICS_ON = "mdstudio serve: metrics at /metrics, for a bearer of MDSTUDIO_METRICS_TOKEN."


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
def serve(host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json; with MDSTUDIO_API_DOCS=1 interactive docs
    at /docs and /redoc), the steward console (/ui/) and, with MDSTUDIO_METRICS_TOKEN set,
    Prometheus metrics (/metrics)."""
    import atexit
    import shutil
    import signal
    import tempfile

    # Before prometheus-client is imported anywhere: the workers count requests in files
    # here, which any worker's /metrics sums (a fresh directory, so no stale counts).
    counts = tempfile.mkdtemp(prefix="mdstudio-metrics-")
    atexit.register(shutil.rmtree, counts, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = counts
    # uvicorn shuts down gracefully on SIGTERM, then raises it again with the handler it found:
    # make that handler an exit, so the directory above is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    import uvicorn

    from mdstudio_core.entrypoints.http import metrics

    click.echo(METRICS_ON if metrics.enabled(runtime().settings) else METRICS_OFF, err=True)

    uvicorn.run(
        "mdstudio_core.entrypoints.http:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
    )
