"""HTTP API throughput on PostgreSQL: `mdstudio serve` in one process, concurrent clients in
another.

Two phases, each a bounded number of requests from `--clients` concurrent clients over loopback:
submit-then-approve pairs (each client a requester token and an approver token), then inbox
reads (`GET /approvals?status=pending`). Prints requests per second and p50/p99 latency per route,
then checks that every approval was applied exactly once (one entity version, four events each).

    python bench/api.py [--pairs 2000] [--reads 5000] [--clients 4] [--workers 2]
    MDSTUDIO_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import httpx
import sqlalchemy as sa

from mdstudio_core.adapters import migrations, tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

ADMIN_URL = os.environ.get(
    "MDSTUDIO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
Latencies = dict[str, list[float]]


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
            "binding": {"source": "warehouse", "table": "facts", "columns": [{"name": "amount"}]},
        },
    }


async def timed(
    client: httpx.AsyncClient, latencies: Latencies, route: str, method: str, url: str, **kw
) -> httpx.Response:
    start = time.perf_counter()
    response = await client.request(method, url, **kw)
    latencies[route].append((time.perf_counter() - start) * 1000)
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {url}: {response.status_code} {response.text}")
    return response


async def approvals_phase(base: str, pairs: list[tuple[dict, dict]], total: int) -> Latencies:
    latencies: Latencies = defaultdict(list)
    per_client = total // len(pairs)

    async def client_loop(index: int, requester: dict, approver: dict) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for i in range(per_client):
                submitted = await timed(
                    client,
                    latencies,
                    "POST /approvals",
                    "POST",
                    "/approvals",
                    json=request(f"bench.c{index}.k{i}"),
                    headers=requester,
                )
                await timed(
                    client,
                    latencies,
                    "POST /approvals/{id}/approve",
                    "POST",
                    f"/approvals/{submitted.json()['id']}/approve",
                    headers=approver,
                )

    await asyncio.gather(*(client_loop(i, r, a) for i, (r, a) in enumerate(pairs)))
    return latencies


async def inbox_phase(base: str, headers: dict, clients: int, total: int) -> Latencies:
    latencies: Latencies = defaultdict(list)

    async def client_loop() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            for _ in range(total // clients):
                await timed(
                    client,
                    latencies,
                    "GET /approvals (inbox)",
                    "GET",
                    "/approvals?status=approved&limit=20",
                    headers=headers,
                )

    await asyncio.gather(*(client_loop() for _ in range(clients)))
    return latencies


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(latencies: Latencies, wall: float) -> None:
    for route, values in latencies.items():
        print(
            f"{route:<32}{len(values):>8}{len(values) / wall:>10.0f}"
            f"{percentile(values, 50):>10.1f}{percentile(values, 99):>10.1f}"
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(url: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mdstudio_core.entrypoints.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
        ],
        env={**os.environ, "MDSTUDIO_DATABASE_URL": url},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return server, base
        except httpx.TransportError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="submit+approve pairs")
    parser.add_argument("--reads", type=int, default=5000, help="inbox reads")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    args = parser.parse_args()

    name = f"mdstudio_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    server = None
    try:
        engine = create_store_engine(url)
        migrations.upgrade(engine)
        tenant = uuid.uuid4()

        def bearer(user: str, *roles: str) -> dict:
            secret, _ = tokens.create_token(
                UnitOfWork(engine), Identity(tenant, user, frozenset(roles))
            )
            return {"Authorization": f"Bearer {secret}"}

        pairs = [
            (bearer(f"requester{c}"), bearer(f"approver{c}", "metadata_steward"))
            for c in range(args.clients)
        ]
        total = args.pairs // args.clients * args.clients
        server, base = start_server(url, args.workers)

        start = time.perf_counter()
        written = asyncio.run(approvals_phase(base, pairs, total))
        write_wall = time.perf_counter() - start
        start = time.perf_counter()
        read = asyncio.run(inbox_phase(base, pairs[0][1], args.clients, args.reads))
        read_wall = time.perf_counter() - start

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
            and tuple(versions) == (1, total)
        )
        print(
            f"PostgreSQL, mdstudio serve --workers {args.workers}, {args.clients} concurrent "
            f"clients in a separate process, loopback ({os.cpu_count()} cores)"
        )
        print(f"{'route':<32}{'requests':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        report(written, write_wall)
        report(read, read_wall)
        print(f"approvals/s (submit+approve pairs): {total / write_wall:.0f}")
        print(
            f"exactly once: {'yes' if exactly_once else 'NO'} ({approved} approved, "
            f"{sum(c for _, c in per_approval)} events)"
        )
        engine.dispose()
        if not exactly_once:
            raise SystemExit(1)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
