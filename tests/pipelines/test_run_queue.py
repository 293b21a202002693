"""The warehouse is protected from the fleet: a real `dagster-daemon`, on the instance
`mdstudio_pipelines.lib.instance` writes, queues 10 runs on source alpha (its own limit, 2) and 2 on
beta (the default, 1). Dagster's own run records show at most the limit in flight per source,
and beta's runs are not held back behind alpha's queue. The runs only take a moment
(tests/pipelines/queue_location.py): what is tested is the queue, not profiling."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from mdstudio_core.config import Settings
from mdstudio_pipelines.lib import instance as dagster_instance
from tests.pipelines.queue_location import RUNS

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LIMITS = {"alpha": 2, "beta": 1}


def most_in_flight(intervals: list[tuple[float, float]]) -> int:
    """The most intervals (from launch to end) open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, step in edges:  # an end sorts before a start at the same moment
        current += step
        most = max(most, current)
    return most


def test_most_in_flight_counts_overlaps():
    assert most_in_flight([(0, 2), (1, 3), (2, 4)]) == 2
    assert most_in_flight([(0, 1), (1, 2)]) == 1
    assert most_in_flight([(0, 10), (1, 2), (3, 4)]) == 2


def test_the_queue_holds_each_source_to_its_limit(postgres_server, tmp_path):
    storage_url = (
        sa.make_url(postgres_server.create_database("mdstudio_queue_dagster"))
        .set(drivername="postgresql+psycopg2")
        .render_as_string(hide_password=False)
    )
    home = tmp_path / "dagster_home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MDSTUDIO_")},
        "DAGSTER_HOME": str(home),
        "MDSTUDIO_DAGSTER_STORAGE_URL": storage_url,
        "MDSTUDIO_SOURCE_ALPHA_MAX_CONCURRENT_RUNS": str(LIMITS["alpha"]),
        # beta is configured, so the instance holds it to the default.
        "MDSTUDIO_SOURCE_BETA_URL": "sqlite://",
        "PYTHONPATH": str(ROOT),
    }
    dagster_instance.prepare(ROOT / "dagster.yaml", Settings.from_env(env), home)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_module:\n      module_name: tests.pipelines.queue_location\n"
        f"      working_directory: {ROOT}\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MDSTUDIO_DAGSTER_STORAGE_URL", storage_url)
        instance = dg.DagsterInstance.from_config(str(home))  # the schema, before the daemon
    log = tmp_path / "daemon.log"
    with open(log, "wb") as output:
        daemon = subprocess.Popen(
            [BIN / "dagster-daemon", "run", "-w", str(workspace)],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        records = _wait_finished(instance, sum(RUNS.values()), daemon, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(30)

    intervals: dict[str, list[tuple[float, float]]] = {source: [] for source in RUNS}
    for record in records:
        run = record.dagster_run
        assert run.status == dg.DagsterRunStatus.SUCCESS, log.read_text()[-3000:]
        # The queue launches a run (RUN_STARTING) when it takes it off the queue.
        [launched] = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.RUN_STARTING
        ).records
        assert record.end_time is not None
        intervals[run.tags["mdstudio/source"]].append((launched.timestamp, record.end_time))
    assert {source: len(found) for source, found in intervals.items()} == RUNS
    in_flight = {source: most_in_flight(found) for source, found in intervals.items()}
    assert in_flight == LIMITS  # reached, never passed
    # beta went while alpha still had runs waiting: its last run ended before alpha's last
    # run was even dequeued.
    assert max(end for _, end in intervals["beta"]) < max(s for s, _ in intervals["alpha"])
    instance.dispose()


def _wait_finished(instance, count: int, daemon: subprocess.Popen, log: Path):
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert daemon.poll() is None, log.read_text()[-3000:]
        records = instance.get_run_records(dg.RunsFilter(job_name="tiny_job"))
        if len(records) == count and all(r.dagster_run.is_finished for r in records):
            return records
        time.sleep(1)
    raise TimeoutError(f"the {count} runs did not finish: {log.read_text()[-3000:]}")
