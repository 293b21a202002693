"""The Dagster pipeline on PostgreSQL storage with the real daemon.

Prints, in one run:
  1. approval_sensor with 10,000 pending events: the daemon's tick durations while it drains
     them (Dagster's limit is 60 s per evaluation), plus one evaluation in process with its
     peak Python memory;
  2. approval -> materialization latency, p50 and p95, through the daemon;
  3. a scheduled tier1 pass over 1,000 entities bound to 100 tables: the schedule's tick and
     profiling_pass_sensor's ticks planning it, runs requested, run time, and warehouse scans
     counted by PostgreSQL (pg_stat_user_tables).

    python bench/pipeline.py [--events 10000] [--latency-samples 5] [--entities 1000 --tables 100]
"""

import argparse
import datetime as dt
import os
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import (  # noqa: E402
    ADMIN_URL,
    create_database,
    drop_databases,
    instigator_state,
    percentile,
    schedule_evaluations,
    start_daemon,
    stop,
    wait,
)

from mdstudio_core.adapters import migrations, tables  # noqa: E402
from mdstudio_core.adapters.database import create_store_engine  # noqa: E402
from mdstudio_core.config import Settings  # noqa: E402
from mdstudio_core.domain.events import NewEvent, validate_event  # noqa: E402
from mdstudio_core.domain.model import EntityType, Identity  # noqa: E402
from mdstudio_core.service_layer import approvals  # noqa: E402
from mdstudio_core.service_layer.unit_of_work import UnitOfWork  # noqa: E402

PASS_SENSOR = "profiling_pass_sensor"
COLUMNS = [
    {"name": "id", "unique": True},
    {"name": "amount", "min": 0},
    {"name": "status", "allowed_values": ["open", "paid", "void"]},
]


def build_warehouse(url: str, count: int, rows: int = 2000) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for i in range(count):
            connection.exec_driver_sql(
                f"CREATE TABLE t{i} AS SELECT g AS id, (g %% 500) - 5 AS amount, "
                f"(ARRAY['open','paid','void','lost'])[1 + g %% 4] AS status "
                f"FROM generate_series(1, {rows}) g"
            )
    engine.dispose()


def metadata_request(key: str, table: str, tier: str = "tier1") -> dict:
    return {
        "entity_type": "GLOBAL_METADATA",
        "entity_key": key,
        "tier": tier,
        "lane": "kernel" if tier == "tier1" else "governed",
        "payload": {
            "canonical_key": key,
            "label": key,
            "description": "",
            "tier": tier,
            "domain": "bench",
            "owner": "bench",
            "data_type": "integer",
            "binding": {"source": "bench", "table": table, "columns": COLUMNS},
        },
    }


def approve(store: sa.Engine, tenant: uuid.UUID, request: dict):
    approval = approvals.submit(
        UnitOfWork(store), Identity(tenant, "alice", frozenset()), request, Settings.from_env()
    )
    return approvals.approve(
        UnitOfWork(store),
        Identity(tenant, "bob", frozenset({"kernel_owner"})),
        approval.id,
        None,
        Settings.from_env(),
    )


def synthetic_events(store: sa.Engine, tenant: uuid.UUID, count: int, entities: int) -> int:
    """`count` approval events over `entities` keys, written through the outbox."""
    now = dt.datetime.now(dt.UTC)
    batch: list[NewEvent] = []
    for i in range(count):
        key = f"bench.events.k{i % entities}"
        batch.append(
            NewEvent(
                type="approval.rejected",
                tenant_id=tenant,
                entity_type=EntityType.KPI,
                entity_key=key,
                correlation_id=uuid.uuid4(),
                actor="bench",
                occurred_at=now,
                payload=validate_event(
                    "approval.rejected",
                    {
                        "approval_id": uuid.uuid4(),
                        "entity_type": "KPI",
                        "entity_key": key,
                        "tier": "tier3",
                        "lane": "governed",
                        "required_role": "metadata_steward",
                        "requested_by": "alice",
                        "decided_by": "bob",
                        "reason": "bench",
                    },
                ),
            )
        )
        if len(batch) == 1000 or i == count - 1:
            with UnitOfWork(store) as uow:
                uow.events.append(batch)
                uow.commit()
            batch = []
    with store.connect() as connection:
        return connection.execute(sa.select(sa.func.max(tables.events.c.id))).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=5)
    parser.add_argument("--entities", type=int, default=1000)
    parser.add_argument("--tables", type=int, default=100)
    args = parser.parse_args()

    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    urls = {
        label: create_database(admin, "mdstudio_bench", label)
        for label in ("store", "dagster", "wh")
    }
    storage_url = sa.make_url(urls["dagster"]).set(drivername="postgresql+psycopg2")
    home = Path(os.environ.get("TMPDIR", "/tmp")) / f"mdstudio_bench_{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MDSTUDIO_DAGSTER_STORAGE_URL": storage_url.render_as_string(hide_password=False),
        "MDSTUDIO_DATABASE_URL": urls["store"],
        "MDSTUDIO_SOURCE_BENCH_URL": urls["wh"],
        "MDSTUDIO_SENSOR_INTERVAL_SECONDS": "1",
        "MDSTUDIO_DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9",  # no webserver to reload
    }
    os.environ.update(env)
    from mdstudio_pipelines.definitions import defs as load_defs
    from mdstudio_pipelines.defs.resources import CatalogResource
    from mdstudio_pipelines.defs.sensors.approvals import decode_cursor
    from mdstudio_pipelines.lib import instance as dagster_instance
    from mdstudio_pipelines.lib.asset_keys import ENTITY_PROFILE
    from mdstudio_pipelines.lib.partitions import partition_key

    dagster_instance.prepare(ROOT / "dagster.yaml", Settings.from_env(), home)
    store = create_store_engine(urls["store"])
    migrations.upgrade(store)
    tenant = uuid.uuid4()
    instance = dg.DagsterInstance.from_config(str(home))
    daemon = None
    try:
        # 1. sensor throughput --------------------------------------------------------------
        last_id = synthetic_events(store, tenant, args.events, entities=1000)
        defs = load_defs()
        tracemalloc.start()
        started = time.perf_counter()
        with dg.build_sensor_context(
            instance=instance,
            definitions=defs,
            resources={"catalog": CatalogResource()},
        ) as context:
            result = defs.resolve_sensor_def("approval_sensor")(context)
        in_process_s = time.perf_counter() - started
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        per_eval = decode_cursor(result.cursor).position

        daemon = start_daemon(env, home / "daemon.log")
        drain_start = time.monotonic()

        def drained():
            state = instigator_state(instance, "approval_sensor")
            if state is None:
                return None
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=200)
            done = [t for t in ticks if t.cursor and decode_cursor(t.cursor).position >= last_id]
            return ticks if done else None

        ticks = wait(drained, 600, "the sensor to drain the outbox", every=0.5)
        drain_s = time.monotonic() - drain_start
        busy = [t for t in ticks if t.status.value == "SUCCESS" or (t.cursor and t.end_timestamp)]
        durations = sorted(t.end_timestamp - t.timestamp for t in busy if t.end_timestamp)
        print(f"1. approval_sensor, {args.events} pending events (PostgreSQL storage, real daemon)")
        print(
            f"   in process: one evaluation read {per_eval} events in {in_process_s:.2f} s, "
            f"peak Python memory {peak_mb:.1f} MiB"
        )
        print(
            f"   daemon: drained in {drain_s:.1f} s wall (incl. daemon start-up) over "
            f"{len(busy)} ticks; tick p50 {percentile(durations, 50):.2f} s, "
            f"max {max(durations):.2f} s (limit 60 s)"
        )

        # 2. approval -> materialization latency -------------------------------------------
        build_warehouse(urls["wh"], max(args.tables, args.latency_samples))
        latencies = []
        for i in range(args.latency_samples):
            key = f"bench.latency.k{i}"
            approved = approve(store, tenant, metadata_request(key, f"t{i}"))
            pk = partition_key(tenant, key)

            def materialized(pk=pk):
                records = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=ENTITY_PROFILE, asset_partitions=[pk]), limit=1
                ).records
                return records[0] if records else None

            record = wait(materialized, 300, f"the profile of {key}", every=0.5)
            latencies.append(record.timestamp - approved.decided_at.timestamp())
        print(
            f"2. approval -> materialization, {len(latencies)} tier1 approvals one at a time: "
            f"p50 {percentile(latencies, 50):.1f} s, p95 {percentile(latencies, 95):.1f} s"
        )
        stop(daemon)
        daemon = None

        # 3. scheduled tier1 pass ----------------------------------------------------------
        with UnitOfWork(store) as uow:
            now = dt.datetime.now(dt.UTC)
            for i in range(args.entities):
                table = f"t{i % args.tables}"
                key = f"bench.scheduled.{table}.c{i}"
                uow.entities.insert(
                    EntityType.GLOBAL_METADATA,
                    tenant,
                    uuid.uuid4(),
                    {
                        "canonical_key": key,
                        "label": key,
                        "description": "",
                        "tier": "tier1",
                        "domain": "bench",
                        "owner": "bench",
                        "data_type": "integer",
                        "status": "active",
                        "binding": {"source": "bench", "table": table, "columns": COLUMNS},
                    },
                    "bench",
                    now,
                )
            uow.commit()
        warehouse = sa.create_engine(urls["wh"], isolation_level="AUTOCOMMIT")
        with warehouse.connect() as connection:
            connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
            time.sleep(1)
            connection.exec_driver_sql("SELECT pg_stat_reset()")
        # The real daemon runs the real schedule, moved to every minute for the bench.
        daemon = start_daemon(
            {**env, "MDSTUDIO_TIER1_PROFILING_CRON": "* * * * *"}, home / "daemon.log"
        )
        scheduled = tables.profiles.c.trigger == "schedule"

        def scheduled_runs_done():
            runs = instance.get_runs(
                dg.RunsFilter(tags={"dagster/sensor_name": "profiling_pass_sensor"})
            )
            with store.connect() as connection:
                saved = connection.execute(
                    sa.select(sa.func.count()).select_from(tables.profiles).where(scheduled)
                ).scalar_one()
            if runs and saved >= args.entities and all(r.is_finished for r in runs):
                return runs
            return None

        runs = wait(scheduled_runs_done, 1800, "the scheduled pass", every=2)
        records = instance.get_run_records(filters=dg.RunsFilter(run_ids=[r.run_id for r in runs]))
        first = min(r.create_timestamp.timestamp() for r in records)
        last = max(r.end_time for r in records if r.end_time)
        failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        found_ticks = {
            state.instigator_name: instance.get_ticks(
                state.instigator_origin_id, state.selector_id, limit=1000
            )
            for state in instance.all_instigator_state()
            if state.instigator_name in ("tier1_profiling_schedule", PASS_SENSOR)
        }
        pages = [
            t.end_timestamp - t.timestamp
            for t in found_ticks[PASS_SENSOR]
            if t.end_timestamp and t.run_ids
        ]
        # A schedule's tick is stamped with its scheduled time; its evaluation starts when the
        # daemon takes it up (the first one, when the daemon has started), as its log says.
        schedule_ticks = found_ticks["tier1_profiling_schedule"]
        evaluations = schedule_evaluations(
            home / "daemon.log", "tier1_profiling_schedule", schedule_ticks
        )
        taken_up = max(
            (t.end_timestamp - t.timestamp for t in schedule_ticks if t.end_timestamp), default=0.0
        )
        stop(daemon)
        daemon = None
        with warehouse.connect() as connection:
            connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
            time.sleep(1)
            scans = dict(
                connection.exec_driver_sql(
                    "SELECT relname, seq_scan FROM pg_stat_user_tables"
                ).all()
            )
        warehouse.dispose()
        with store.connect() as connection:
            scheduled = tables.profiles.c.trigger == "schedule"
            profiled = connection.execute(
                sa.select(sa.func.count()).select_from(tables.profiles).where(scheduled)
            ).scalar_one()
            table_of = tables.profiles.c.details["table"].as_string()
            passes = connection.execute(
                sa.select(table_of, sa.func.count(sa.distinct(tables.profiles.c.run_id)))
                .where(scheduled)
                .group_by(table_of)
            ).all()
        entities_per_table = args.entities // args.tables
        print(
            f"3. tier1 schedule over {args.entities} entities on {args.tables} tables, by the "
            f"daemon: slowest schedule tick {max(evaluations):.2f} s of evaluation "
            f"({len(evaluations)} ticks; from the scheduled time, {taken_up:.2f} s at most); "
            f"{PASS_SENSOR} planned it in {len(pages)} ticks, slowest {max(pages):.2f} s "
            f"(limit 60 s); {len(runs)} runs launched ({len(failed)} failed), first run created "
            f"to last run ended {last - first:.1f} s, {profiled} profiles saved"
        )
        print(
            f"   profile passes per table: max {max(n for _, n in passes)} "
            f"({entities_per_table} entities each; a pass is 2 statements, the row pass and "
            f"the distinct pass)"
        )
        print(
            f"   PostgreSQL seq scans (pg_stat_user_tables): {sum(scans.values())} in total, "
            f"per table max {max(scans.values())} (the distinct pass reads each column in its "
            f"own parallel branch)"
        )
    finally:
        stop(daemon)
        instance.dispose()
        store.dispose()
        drop_databases(admin, urls.values())


if __name__ == "__main__":
    main()
