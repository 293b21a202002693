"""A 10,000-item change set against 10,000 single approvals, on PostgreSQL, in one run.

One process on one store connection, the services as the CLI and the API call them: first the
change set (submit, then approve: every item applied and its events written in one
transaction), then the same number of new fields through single requests (each submitted and
approved). Prints each side's wall time and the CPU it took (this process, and its PostgreSQL
backend, from /proc: on a shared machine the wall time also holds the waits for a core), the
ratio, and checks that every item was applied exactly once with its four events. The target:
the set submitted and approved in under 10 s.

    python bench/change_sets.py [--items 10000] [--singles 10000] [--rounds 1]
    MDSTUDIO_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import sqlalchemy as sa

from mdstudio_core.adapters import migrations, tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import approvals, change_sets
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

ADMIN_URL = os.environ.get(
    "MDSTUDIO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TARGET_SECONDS = 10.0
EVENTS_PER_ITEM = 4  # metadata.approved, metadata.changed, metadata.profile.due, approval.approved


def request(key: str) -> dict:
    """A tier2 field bound to a warehouse column (as bench/approvals.py submits)."""
    return {
        "entity_type": "GLOBAL_METADATA",
        "entity_key": key,
        "tier": "tier2",
        "lane": "governed",
        "payload": {
            "canonical_key": key,
            "label": "Bench field",
            "description": "",
            "tier": "tier2",
            "domain": "bench",
            "owner": "bench",
            "data_type": "integer",
            "binding": {
                "source": "warehouse",
                "table": "facts",
                "columns": [{"name": "amount", "min": 0}],
            },
        },
    }


def backend_cpu(engine) -> float:
    """CPU seconds the engine's one PostgreSQL backend has used (it runs on this machine)."""
    with engine.connect() as connection:
        pid = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(engine, work):
    """`work()`'s result, wall seconds, and CPU seconds of this process and of the backend."""
    wall, cpu, server = time.perf_counter(), time.process_time(), backend_cpu(engine)
    result = work()
    return (
        result,
        time.perf_counter() - wall,
        time.process_time() - cpu,
        backend_cpu(engine) - server,
    )


def change_set_round(engine, settings: Settings, tenant: uuid.UUID, items: int, tag: str):
    requester = Identity(tenant, "requester", frozenset())
    approver = Identity(tenant, "approver", frozenset({"metadata_steward"}))
    requests = [request(f"bench.set{tag}.k{i}") for i in range(items)]
    t0 = time.perf_counter()
    submitted = change_sets.submit(
        UnitOfWork(engine), requester, f"Bench {tag}", requests, settings
    )
    t1 = time.perf_counter()
    decided = approvals.approve(UnitOfWork(engine), approver, submitted.approval.id, None, settings)
    t2 = time.perf_counter()
    assert decided.status.value == "approved"
    return t1 - t0, t2 - t1, submitted.approval.id


def singles_round(engine, settings: Settings, tenant: uuid.UUID, count: int, tag: str) -> float:
    requester = Identity(tenant, "requester", frozenset())
    approver = Identity(tenant, "approver", frozenset({"metadata_steward"}))
    t0 = time.perf_counter()
    for i in range(count):
        pending = approvals.submit(
            UnitOfWork(engine), requester, request(f"bench.one{tag}.k{i}"), settings
        )
        approvals.approve(UnitOfWork(engine), approver, pending.id, None, settings)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--singles", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds; medians")
    args = parser.parse_args()

    name = f"mdstudio_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    settings = Settings(database_url=url)
    try:
        # One connection: every unit of work runs on the backend whose CPU is measured.
        engine = create_store_engine(url, settings.store_timeouts, pool_size=1, max_overflow=0)
        migrations.upgrade(engine)
        tenant = uuid.uuid4()
        submits, approves, sets, singles, set_ids = [], [], [], [], []
        set_cpu, single_cpu = [], []
        for round_ in range(args.rounds):
            tag = str(round_)
            (submit_s, approve_s, set_id), wall, cpu, server = timed(
                engine, lambda tag=tag: change_set_round(engine, settings, tenant, args.items, tag)
            )
            submits.append(submit_s)
            approves.append(approve_s)
            sets.append(wall)
            set_cpu.append((cpu, server))
            set_ids.append(set_id)
            _, wall, cpu, server = timed(
                engine, lambda tag=tag: singles_round(engine, settings, tenant, args.singles, tag)
            )
            singles.append(wall)
            single_cpu.append((cpu, server))

        with engine.connect() as connection:
            events = dict(
                connection.execute(
                    sa.select(tables.events.c.correlation_id, sa.func.count())
                    .where(tables.events.c.correlation_id.in_(set_ids))
                    .group_by(tables.events.c.correlation_id)
                ).all()
            )
            applied = connection.execute(
                sa.select(sa.func.count(), sa.func.max(tables.global_metadata.c.version)).where(
                    tables.global_metadata.c.canonical_key.like("bench.set%")
                )
            ).one()
        expected_events = args.items * EVENTS_PER_ITEM
        exactly_once = all(events.get(i) == expected_events for i in set_ids) and tuple(
            applied
        ) == (args.items * args.rounds, 1)

        set_s, single_s = statistics.median(sets), statistics.median(singles)
        print(
            f"PostgreSQL, one process ({os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f}), {args.rounds} round(s), medians"
        )
        print(
            f"change set of {args.items} items: submit {statistics.median(submits):.2f} s, "
            f"approve {statistics.median(approves):.2f} s, total {set_s:.2f} s "
            f"(target < {TARGET_SECONDS:g} s: {'met' if set_s < TARGET_SECONDS else 'MISSED'})"
        )
        print(
            f"  CPU: this process {statistics.median(c for c, _ in set_cpu):.2f} s, "
            f"PostgreSQL backend {statistics.median(s for _, s in set_cpu):.2f} s"
        )
        print(
            f"{args.singles} single approvals (submit + approve each): {single_s:.2f} s, "
            f"{args.singles / single_s:.0f} per second"
        )
        print(
            f"  CPU: this process {statistics.median(c for c, _ in single_cpu):.2f} s, "
            f"PostgreSQL backend {statistics.median(s for _, s in single_cpu):.2f} s"
        )
        per_item_set = set_s / args.items
        per_item_single = single_s / args.singles
        print(
            f"per change: set {per_item_set * 1000:.2f} ms, single {per_item_single * 1000:.2f} "
            f"ms; single/set ratio {per_item_single / per_item_set:.1f}"
        )
        print(
            f"exactly once: {'yes' if exactly_once else 'NO'} ({applied[0]} fields at version "
            f"{applied[1]}, {sum(events.values())} events of the sets)"
        )
        engine.dispose()
        if not exactly_once:
            raise SystemExit(1)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
