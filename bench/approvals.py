"""Approval throughput on PostgreSQL: 4 worker processes each submit and approve requests.

Prints approvals per second and p50/p99 latency of submit and approve, then checks that every
approval was applied exactly once (one entity version, exactly four events each).

    python bench/approvals.py [--requests 2000] [--workers 4]
    MDSTUDIO_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
import uuid

import sqlalchemy as sa

from mdstudio_core.adapters import migrations, tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import approvals
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

ADMIN_URL = os.environ.get(
    "MDSTUDIO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def request(key: str) -> dict:
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


def worker(
    url: str, tenant: uuid.UUID, worker_id: int, count: int, start: float, out: mp.Queue
) -> None:
    engine = create_store_engine(url, pool_size=1)
    requester = Identity(tenant, f"requester{worker_id}", frozenset())
    approver = Identity(tenant, f"approver{worker_id}", frozenset({"metadata_steward"}))
    while time.time() < start:
        time.sleep(0.001)
    submit_ms, approve_ms = [], []
    cpu_started = time.process_time()
    for i in range(count):
        t0 = time.perf_counter()
        approval = approvals.submit(
            UnitOfWork(engine), requester, request(f"bench.w{worker_id}.k{i}"), Settings()
        )
        t1 = time.perf_counter()
        approvals.approve(UnitOfWork(engine), approver, approval.id, None, Settings())
        t2 = time.perf_counter()
        submit_ms.append((t1 - t0) * 1000)
        approve_ms.append((t2 - t1) * 1000)
    out.put((submit_ms, approve_ms, time.time(), time.process_time() - cpu_started))


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    name = f"mdstudio_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        engine = create_store_engine(url)
        migrations.upgrade(engine)
        tenant = uuid.uuid4()
        per_worker = args.requests // args.workers
        out: mp.Queue = mp.Queue()
        start = time.time() + 1.0
        processes = [
            mp.Process(target=worker, args=(url, tenant, w, per_worker, start, out))
            for w in range(args.workers)
        ]
        for process in processes:
            process.start()
        results = [out.get() for _ in processes]
        for process in processes:
            process.join()
        wall = max(finished for _, _, finished, _ in results) - start
        submit_ms = [v for s, _, _, _ in results for v in s]
        approve_ms = [v for _, a, _, _ in results for v in a]
        total = per_worker * args.workers

        with engine.connect() as connection:
            approved = connection.execute(
                sa.select(sa.func.count()).where(tables.approvals.c.status == "approved")
            ).scalar_one()
            per_approval = connection.execute(
                sa.select(tables.events.c.correlation_id, sa.func.count()).group_by(
                    tables.events.c.correlation_id
                )
            ).all()
            versions = connection.execute(
                sa.select(sa.func.max(tables.global_metadata.c.version), sa.func.count())
            ).one()
        exactly_once = (
            approved == total
            and len(per_approval) == total
            and all(count == 4 for _, count in per_approval)
            and versions == (1, total)
        )
        print(
            f"PostgreSQL, {args.workers} worker processes, {total} submit+approve pairs "
            f"({os.cpu_count()} cores)"
        )
        print(f"{'':<10}{'p50 ms':>10}{'p99 ms':>10}")
        print(f"{'submit':<10}{percentile(submit_ms, 50):>10.1f}{percentile(submit_ms, 99):>10.1f}")
        print(
            f"{'approve':<10}{percentile(approve_ms, 50):>10.1f}{percentile(approve_ms, 99):>10.1f}"
        )
        print(f"approvals/s (each with its submit): {total / wall:.0f}   wall {wall:.2f} s")
        print(
            f"approve calls/s if submits were free: "
            f"{total / (sum(approve_ms) / 1000 / args.workers):.0f}"
        )
        print(
            f"exactly once: {'yes' if exactly_once else 'NO'} ({approved} approved, "
            f"{sum(c for _, c in per_approval)} events)"
        )
        engine.dispose()
        if not exactly_once:
            raise SystemExit(1)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
