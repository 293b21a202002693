"""What the benchmarks that drive the real Dagster daemon share (bench/soak.py and
bench/pipeline.py): their throw-away databases, the daemon's start and stop, waiting for it,
its instigators' states, and percentiles.

The benchmarks run as scripts (`python bench/soak.py`), which puts bench/ first on the path:
they import this module as `common`."""

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get(
    "MDSTUDIO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BIN = Path(sys.executable).parent


def create_database(admin: sa.Engine, prefix: str, label: str) -> str:
    """A new database on the bench's server, named so a run's leftovers are easy to find."""
    name = f"{prefix}_{label}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_databases(admin: sa.Engine, urls: Iterable[str]) -> None:
    """Drops the run's databases, whatever is still connected to them; one that fails to drop
    does not keep the others."""
    with admin.connect() as connection:
        for url in urls:
            with contextlib.suppress(Exception):
                connection.exec_driver_sql(
                    f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)'
                )


def start_daemon(env: dict, log_path: Path) -> subprocess.Popen:
    """`dagster-daemon run` on the project's workspace, in a process group of its own so that
    `stop` ends its code servers too."""
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the daemon
    return subprocess.Popen(
        [BIN / "dagster-daemon", "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen | None) -> None:
    """Ends a process started in a session of its own, with its children."""
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(60)


def wait(predicate: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    """The predicate's first true value; the benchmark stops if none comes within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"{Path(sys.argv[0]).stem}: timed out waiting for {what}")


def instigator_state(instance: dg.DagsterInstance, name: str) -> Any:
    """The stored state of a sensor or schedule, or None before its first tick."""
    for state in instance.all_instigator_state():
        if state.instigator_name == name:
            return state
    return None


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]
