"""End to end, as deployed: a real `dagster-daemon` subprocess on PostgreSQL storage, the
mdstudio store on PostgreSQL, the demo warehouse. Approvals go in through the service; runs,
profiles, materializations, checks and skips come out through Dagster alone."""

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from demo import warehouse as demo_warehouse
from mdstudio_core.adapters import migrations, tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.service_layer import approvals, consumers, profile_requests
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from mdstudio_pipelines.lib import instance as dagster_instance
from mdstudio_pipelines.lib.asset_keys import ENTITY_PROFILE
from mdstudio_pipelines.lib.audit import timeline
from mdstudio_pipelines.lib.partitions import partition_key
from tests.pipelines.crash_coordinator import CRASH_FLAG
from tests.support.factories import (
    DEMO_BINDING,
    SETTINGS,
    demo_binding,
    glossary_request,
    metadata_request,
    person,
)

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TABLES = ("orders", "orders_a", "orders_b", "orders_c")
DEADLINE_SECONDS = 20


def use_crash_coordinator(path: Path) -> None:
    """The project's dagster.yaml with its queue settings kept, in the crash coordinator."""
    instance = yaml.safe_load(path.read_text())
    queue = instance.pop("run_queue")
    instance["run_coordinator"] = {
        "module": "tests.pipelines.crash_coordinator",
        "class": "CrashAfterSubmitCoordinator",
        "config": queue,
    }
    path.write_text(yaml.safe_dump(instance))


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class Deployment:
    """The daemon, its instance, and the mdstudio store it reads."""

    def __init__(self, tmp: Path, store_url: str, storage_url: str, warehouse_url: str):
        self.home = tmp / "dagster_home"
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.crash_flag = tmp / "crash-after-submit"
        self.env = {
            **os.environ,
            "DAGSTER_HOME": str(self.home),
            "MDSTUDIO_DAGSTER_STORAGE_URL": storage_url,
            "MDSTUDIO_DATABASE_URL": store_url,
            "MDSTUDIO_SOURCE_DEMO_URL": warehouse_url,
            "MDSTUDIO_SENSOR_INTERVAL_SECONDS": "2",
            "MDSTUDIO_TABLES_PER_RUN": "1",  # one run per table: a tick launches several
            # tier3 requests wait 20 s at most (the other tests' tier3 requests are decided
            # at once): approval_deadline_sensor marks the late ones.
            "MDSTUDIO_TIER3_APPROVAL_SLA_HOURS": str(DEADLINE_SECONDS / 3600),
            # No webserver here: a reload request must reach nobody's (port 9 is discard).
            "MDSTUDIO_DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9",
            CRASH_FLAG: str(self.crash_flag),
            "PYTHONPATH": str(ROOT),
        }
        dagster_instance.prepare(ROOT / "dagster.yaml", Settings.from_env(self.env), self.home)
        use_crash_coordinator(self.home / "dagster.yaml")
        # The instance's dagster.yaml names its storage by the variable; read it in this process
        # while it is set, and leave the test process's environment as it was.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MDSTUDIO_DAGSTER_STORAGE_URL", storage_url)
            self.instance = dg.DagsterInstance.from_config(str(self.home))
        self.store = create_store_engine(store_url)
        self.tenant = uuid.uuid4()
        self.daemon: subprocess.Popen | None = None
        self.groups: list[int] = []
        self.starts = 0

    def start_daemon(self) -> None:
        self.starts += 1
        log = open(self.logs / f"daemon{self.starts}.log", "wb")  # noqa: SIM115
        self.daemon = subprocess.Popen(
            [BIN / "dagster-daemon", "run", "-w", str(ROOT / "workspace.yaml")],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.groups.append(self.daemon.pid)
        self.wait_for_heartbeats(since=time.time())

    def wait_for_heartbeats(self, since: float) -> None:
        """Until every daemon the instance needs has beaten since `since` (the start)."""

        def heartbeats():
            assert self.daemon.poll() is None, self.log_tail()
            beats = self.instance.get_daemon_heartbeats()
            required = set(self.instance.get_required_daemon_types())
            return required <= set(beats) and all(beats[d].timestamp > since for d in required)

        wait_for(heartbeats, 120, "daemon heartbeats")

    def stop(self) -> None:
        for group in self.groups:  # the daemon, its code servers and run workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs.iterdir())

    def approve(
        self,
        key: str,
        tier: str = "tier1",
        table: str | None = "orders",
        columns: list[dict] | None = None,
        **fields,
    ):
        request = metadata_request(
            key=key, tier=tier, binding=demo_binding(table, columns) if table else None, **fields
        )
        approval = approvals.submit(
            UnitOfWork(self.store), person(self.tenant, "alice"), request, SETTINGS
        )
        role = "kernel_owner" if request["lane"] == "kernel" else "metadata_steward"
        return approvals.approve(
            UnitOfWork(self.store), person(self.tenant, "bob", role), approval.id, None, SETTINGS
        )

    def runs(self):
        return self.instance.get_runs(dg.RunsFilter(job_name="profile_tables_job"))

    def wait_runs_done(self, count: int, timeout: float = 240):
        def done():
            runs = self.runs()
            finished = [r for r in runs if r.is_finished]
            return runs if len(runs) >= count and len(finished) == len(runs) else None

        runs = wait_for(done, timeout, f"{count} profiling runs")
        failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        assert not failed, self.log_tail()
        return runs

    def profiles(self, key: str):
        with self.store.connect() as connection:
            return connection.execute(
                sa.select(tables.profiles).where(tables.profiles.c.canonical_key == key)
            ).all()

    def finished_sensor_ticks(self) -> int:
        states = [s for s in self.instance.all_instigator_state() if s.name == "approval_sensor"]
        if not states:
            return 0
        ticks = self.instance.get_ticks(
            states[0].instigator_origin_id, states[0].selector_id, limit=10_000
        )
        return sum(t.status.value in ("SUCCESS", "SKIPPED", "FAILURE") for t in ticks)

    def wait_sensor_ticks(self, count: int) -> None:
        """Wait until approval_sensor has finished `count` more ticks (no fixed sleep)."""
        target = self.finished_sensor_ticks() + count
        wait_for(lambda: self.finished_sensor_ticks() >= target, 60, f"{count} sensor ticks")

    def decisions(self, key: str):
        return [
            entry["details"]
            for entry in timeline(self.instance, self.tenant, key)
            if entry["kind"] == "skip"
        ]


def dagster_storage_url(postgres_server, prefix: str) -> str:
    """A new database for Dagster's own storage, which it reaches through psycopg2."""
    url = sa.make_url(postgres_server.create_database(prefix))
    return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def deployment(postgres_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    store_url = postgres_server.create_database("mdstudio_e2e_store")
    storage_url = dagster_storage_url(postgres_server, "mdstudio_e2e_dagster")
    warehouse_url = demo_warehouse.build(tmp / "warehouse.db")
    warehouse = sa.create_engine(warehouse_url)
    with warehouse.begin() as connection:
        for name in TABLES[1:]:
            connection.exec_driver_sql(f"CREATE TABLE {name} AS SELECT * FROM orders")
    warehouse.dispose()
    engine = create_store_engine(store_url)
    migrations.upgrade(engine)
    engine.dispose()
    deployment = Deployment(tmp, store_url, storage_url, warehouse_url)
    deployment.start_daemon()
    try:
        yield deployment
    finally:
        deployment.stop()
        deployment.instance.dispose()
        deployment.store.dispose()
        shutil.rmtree(deployment.home, ignore_errors=True)


def test_tier1_approval_is_profiled_by_the_daemon_and_tier3_is_not(deployment):
    before = len(deployment.runs())
    approval = deployment.approve("finance.first.gross_amount")
    deployment.approve("finance.first.note", tier="tier3")
    runs = deployment.wait_runs_done(before + 1)
    [run] = [r for r in runs if r.tags.get("mdstudio/approval_id") == str(approval.id)]
    assert run.tags["mdstudio/tier"] == "tier1"
    [profile] = deployment.profiles("finance.first.gross_amount")
    assert profile.approval_id == approval.id
    assert profile.trigger == "approval"
    pk = partition_key(deployment.tenant, "finance.first.gross_amount")
    [materialization] = deployment.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ENTITY_PROFILE, asset_partitions=[pk]), limit=5
    ).records
    score = materialization.asset_materialization.metadata["quality_score"].value
    assert score == profile.quality_score == 91.89  # see tests/support/factories.py
    kinds = [
        e["kind"]
        for e in timeline(deployment.instance, deployment.tenant, "finance.first.gross_amount")
    ]
    assert kinds[:4] == ["observation"] * 4
    assert {"materialization", "check"} <= set(kinds)
    # tier3: observed, never profiled.
    assert deployment.profiles("finance.first.note") == []
    assert len(deployment.runs()) == before + 1
    observed = timeline(deployment.instance, deployment.tenant, "finance.first.note")
    assert [e["details"]["event_type"] for e in observed] == [
        "metadata.approved",
        "metadata.changed",
        "approval.approved",
    ]


def test_second_change_within_interval_is_skipped_by_the_cost_guard(deployment):
    key = "finance.second_change.gross_amount"
    before = len(deployment.runs())
    deployment.approve(key)
    deployment.wait_runs_done(before + 1)
    wait_for(lambda: deployment.profiles(key), 60, "the first profile")
    deployment.approve(key, label="Gross amount, renamed", columns=DEMO_BINDING["columns"][:2])
    wait_for(lambda: deployment.decisions(key), 60, "a skip")
    [skip] = deployment.decisions(key)
    assert skip["reason"] == "COST_GUARD"
    assert len(deployment.runs()) == before + 1


def test_profile_request_without_binding_is_skipped(deployment):
    deployment.approve("finance.revenue.unbound", table=None)
    profile_requests.request_profile(
        UnitOfWork(deployment.store), person(deployment.tenant, "carol"), "finance.revenue.unbound"
    )
    wait_for(lambda: deployment.decisions("finance.revenue.unbound"), 60, "a skip")
    [skip] = deployment.decisions("finance.revenue.unbound")
    assert skip["reason"] == "NO_BINDING"


def test_daemon_killed_between_launching_runs_and_committing_its_cursor(deployment):
    """The crash the design exists for, made deterministic: the daemon dies right after it
    queued the first of a tick's runs, before the tick's cursor is committed. Restarted, it
    launches the rest and none twice; every due entity is profiled exactly once."""
    before = {r.run_id for r in deployment.runs()}
    keys = [f"finance.killed.{table}" for table in TABLES[1:]]
    deployment.crash_flag.touch()
    for key, table in zip(keys, TABLES[1:], strict=True):
        deployment.approve(key, table=table)
    wait_for(lambda: deployment.daemon.poll() is not None, 120, "the daemon to crash")
    assert deployment.daemon.returncode == -signal.SIGKILL
    assert not deployment.crash_flag.exists()
    launched = [r for r in deployment.runs() if r.run_id not in before]
    assert len(launched) == 1  # queued, then the crash: the cursor still points before it
    deployment.start_daemon()

    def all_profiled():
        runs = [r for r in deployment.runs() if r.run_id not in before]
        done = all(r.is_finished for r in runs) and all(deployment.profiles(k) for k in keys)
        return runs if done else None

    runs = wait_for(all_profiled, 300, "every due entity to be profiled")
    deployment.wait_sensor_ticks(2)  # later ticks launch nothing more
    assert [r for r in deployment.runs() if r.run_id not in before] == runs
    assert len(runs) == len(keys)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), deployment.log_tail()
    run_keys = [r.tags["dagster/run_key"] for r in runs]
    assert len(run_keys) == len(set(run_keys))
    for key in keys:
        assert len(deployment.profiles(key)) == 1, key


def test_the_daemon_marks_a_late_request_overdue_once_within_a_minute(deployment):
    """`approval_deadline_sensor` in the real daemon: a tier3 request left pending past its
    20 s deadline gets one `approval.overdue`, written within a minute of the deadline."""
    pending = approvals.submit(
        UnitOfWork(deployment.store),
        person(deployment.tenant, "alice"),
        glossary_request(),
        SETTINGS,
    )
    deadline = pending.requested_at + dt.timedelta(seconds=DEADLINE_SECONDS)

    def overdue():
        with UnitOfWork(deployment.store) as uow:
            found = uow.events.list(tenant_id=deployment.tenant, limit=1000)
        return [e for e in found if e.type == "approval.overdue"]

    [event] = wait_for(overdue, DEADLINE_SECONDS + 90, "approval.overdue")
    assert event.correlation_id == pending.id
    assert deadline <= event.occurred_at < deadline + dt.timedelta(minutes=1)
    # Later ticks write no second event.
    time.sleep(35)
    assert len(overdue()) == 1


def test_a_replay_killed_after_its_first_run_is_launched_launches_each_run_once(deployment):
    """A replay of three forced requests (each its own table and run): the daemon dies right
    after queueing the replay's first run, before the tick's cursor is committed. Restarted,
    it asks for the same runs again; Dagster launches the other two, none twice, and later
    ticks launch nothing more. The replay's runs are keyed by it, so they ran although the
    original runs had the same events."""
    keys = [f"finance.replayed.{table}" for table in TABLES[1:]]
    before = len(deployment.runs())
    for key, table in zip(keys, TABLES[1:], strict=True):
        deployment.approve(key, table=table)
    deployment.wait_runs_done(before + len(keys))
    requests = [
        profile_requests.request_profile(
            UnitOfWork(deployment.store), person(deployment.tenant, "sam"), key, force=True
        )
        for key in keys
    ]
    deployment.wait_runs_done(before + 2 * len(keys))

    def recorded():
        with UnitOfWork(deployment.store) as uow:
            return uow.cursors.get("approval_sensor").position >= requests[-1].id

    wait_for(recorded, 120, "approval_sensor's cursor past the requests, in the store")
    deployment.crash_flag.touch()
    replay = consumers.replay(
        UnitOfWork(deployment.store),
        "olga",
        "approval_sensor",
        requests[0].id,
        requests[-1].id,
        dt.datetime.now(dt.UTC),
    )
    wait_for(lambda: deployment.daemon.poll() is not None, 120, "the daemon to crash")
    prefix = f"replay:{replay.id}:"

    def replayed():
        return [r for r in deployment.runs() if r.tags["dagster/run_key"].startswith(prefix)]

    assert len(replayed()) == 1
    deployment.start_daemon()
    wait_for(
        lambda: len(replayed()) == len(keys) and all(r.is_finished for r in replayed()),
        300,
        "the replay's runs",
    )
    deployment.wait_sensor_ticks(2)
    runs = replayed()
    assert len(runs) == len(keys) == len({r.tags["dagster/run_key"] for r in runs})
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), deployment.log_tail()
    for key in keys:
        assert len(deployment.profiles(key)) == 3, key  # approval, request, replay
    with UnitOfWork(deployment.store) as uow:
        after = uow.cursors.get("approval_sensor")
    assert after.replay_id is None and after.position >= replay.id
