"""What the benchmarks that drive the real Dagster daemon share (bench/soak.py and
bench/pipeline.py): their throw-away databases, the daemon's start and stop, waiting for it,
its instigators' states, and percentiles.

The benchmarks run as scripts (`python bench/soak.py`), which puts bench/ first on the path:
they import this module as `common`."""

import contextlib
import datetime as dt
import os
import re
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


# The daemon's log line that starts a schedule's evaluation: its time, the schedule and the
# scheduled time it evaluates (`dagster-daemon run`'s format; the colours stripped).
EVALUATING = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000 - dagster\.daemon\.SchedulerDaemon - INFO - "
    r"Evaluating schedule `(?P<name>[\w-]+)` at (?P<slot>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000$"
)
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def schedule_evaluations(log_path: Path, name: str, ticks: Iterable[Any]) -> list[float]:
    """How long each finished tick of schedule `name` took to evaluate: from the daemon's
    "Evaluating schedule" line to the tick's end. A schedule's tick is stamped with its
    scheduled time, so `end_timestamp - timestamp` would also count how late the daemon took it
    up (its start-up, or its loop behind on a busy machine), which is no part of the tick's
    60 s. The log's times are whole seconds: each figure is at most a second high; a tick the
    log does not show is counted from its scheduled time (an upper bound)."""
    started: dict[float, float] = {}
    for line in log_path.read_text(errors="replace").splitlines():
        found = EVALUATING.match(COLOUR.sub("", line))
        if found and found["name"] == name:
            slot = _utc_seconds(found["slot"])
            started.setdefault(slot, _utc_seconds(found["at"]))
    return sorted(
        max(0.0, t.end_timestamp - started.get(t.timestamp, t.timestamp))
        for t in ticks
        if t.end_timestamp
    )


def _utc_seconds(text: str) -> float:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
