"""What HTTP costs on top of the work it serves: the same approvals through the services
directly (the core rate) and through `mdstudio serve` (the HTTP rate), in one run on one
PostgreSQL, side by side.

1. Core: `--clients` worker processes submit and approve requests by calling the services (the
   workload of bench/approvals.py).
2. HTTP: `mdstudio serve --workers 2` in its own process; `--clients` client threads in this one
   submit and approve the same number of requests over keep-alive connections, then read the
   inbox (`GET /approvals?status=approved&limit=20`).

The clients use `http.client`: a client's own CPU is spent on the same two cores as the server's,
and httpx cost 2.2 ms of CPU per approval here, as much as half the server's work.

Prints requests per second and p50/p99 per route, checks that every approval was applied
exactly once (one entity version and four events each), and ends with
`http/core approvals ratio: R`.

    python bench/api.py [--pairs 2000] [--reads 5000] [--clients 4] [--workers 2]
    MDSTUDIO_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict

import orjson
import sqlalchemy as sa
from approvals import request, worker

from mdstudio_core.adapters import migrations, tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

ADMIN_URL = os.environ.get(
    "MDSTUDIO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
Latencies = dict[str, list[float]]
WARM_UP = 25  # untimed submit+approve pairs per HTTP client first


class Client:
    """One keep-alive connection, timing each request under its route's name."""

    def __init__(self, port: int, headers: dict[str, str], latencies: Latencies) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {**headers, "Content-Type": "application/json"}
        self.latencies = latencies

    def call(self, route: str, method: str, path: str, body: object = None) -> dict:
        data = orjson.dumps(body) if body is not None else None
        started = time.perf_counter()
        self.connection.request(method, path, body=data, headers=self.headers)
        response = self.connection.getresponse()
        content = response.read()
        self.latencies[route].append((time.perf_counter() - started) * 1000)
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {content[:300]!r}")
        return orjson.loads(content)


def in_threads(target, arguments: list[tuple]) -> float:
    """Run `target(*arguments[i])` in one thread each; the wall time of the slowest."""
    threads = [threading.Thread(target=target, args=args) for args in arguments]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def core_phase(url: str, tenant: uuid.UUID, clients: int, per_client: int) -> tuple[float, dict]:
    out: mp.Queue = mp.Queue()
    start = time.time() + 1.0
    processes = [
        mp.Process(target=worker, args=(url, tenant, w, per_client, start, out))
        for w in range(clients)
    ]
    for process in processes:
        process.start()
    results = [out.get() for _ in processes]
    for process in processes:
        process.join()
    wall = max(finished for _, _, finished in results) - start
    latencies = {
        "submit (service)": [v for s, _, _ in results for v in s],
        "approve (service)": [v for _, a, _ in results for v in a],
    }
    return wall, latencies


def http_client(
    port: int, index: int, pair: tuple[dict, dict], count: int, label: str, start: float, out
) -> None:
    """One client process: `count` submit+approve pairs over two keep-alive connections."""
    latencies: Latencies = defaultdict(list)
    submitter, decider = Client(port, pair[0], latencies), Client(port, pair[1], latencies)
    time.sleep(max(0.0, start - time.time()))
    for i in range(count):
        submitted = submitter.call(
            "POST /approvals", "POST", "/approvals", request(f"bench.{label}{index}.k{i}")
        )
        decider.call(
            "POST /approvals/{id}/approve", "POST", f"/approvals/{submitted['id']}/approve"
        )
    out.put((dict(latencies), time.time()))


def http_phase(
    port: int, pairs: list[tuple[dict, dict]], per_client: int, label: str
) -> tuple[float, dict]:
    """The clients are processes, as the core's workers are: neither side shares a GIL."""
    out: mp.Queue = mp.Queue()
    start = time.time() + 1.0
    processes = [
        mp.Process(target=http_client, args=(port, i, pair, per_client, label, start, out))
        for i, pair in enumerate(pairs)
    ]
    for process in processes:
        process.start()
    results = [out.get() for _ in processes]
    for process in processes:
        process.join()
    latencies: Latencies = defaultdict(list)
    for client_latencies, _ in results:
        for route, values in client_latencies.items():
            latencies[route].extend(values)
    return max(finished for _, finished in results) - start, latencies


def read_phase(port: int, headers: dict, clients: int, total: int) -> tuple[float, dict]:
    latencies: Latencies = defaultdict(list)

    def client_loop() -> None:
        client = Client(port, headers, latencies)
        for _ in range(total // clients):
            client.call("GET /approvals (inbox)", "GET", "/approvals?status=approved&limit=20")

    wall = in_threads(client_loop, [()] * clients)
    return wall, latencies


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(latencies: Latencies, wall: float) -> None:
    for route, values in latencies.items():
        print(
            f"{route:<32}{len(values):>9}{len(values) / wall:>9.0f}"
            f"{percentile(values, 50):>9.1f}{percentile(values, 99):>9.1f}"
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(url: str, workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "mdstudio_core.entrypoints.cli", "serve", "--port"]
    server = subprocess.Popen(
        [*command, str(port), "--workers", str(workers), "--no-access-log"],
        env={**os.environ, "MDSTUDIO_DATABASE_URL": url},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            probe.request("GET", "/healthz")
            if probe.getresponse().status == 200:
                return server, port
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start")


def exactly_once(engine: sa.Engine, expected: int) -> tuple[bool, str]:
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
    ok = (
        approved == expected
        and len(per_approval) == expected
        and all(count == 4 for _, count in per_approval)
        and tuple(versions) == (1, expected)
    )
    events = sum(count for _, count in per_approval)
    return ok, f"{approved} approved, {events} events"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000, help="submit+approve pairs per phase")
    parser.add_argument("--reads", type=int, default=5000, help="inbox reads")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients / workers")
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
        per_client = args.pairs // args.clients
        total = per_client * args.clients

        core_wall, core = core_phase(url, uuid.uuid4(), args.clients, per_client)

        tenant = uuid.uuid4()

        def bearer(user: str, *roles: str) -> dict:
            identity = Identity(tenant, user, frozenset(roles))
            secret, _ = tokens.create_token(UnitOfWork(engine), identity)
            return {"Authorization": f"Bearer {secret}"}

        pairs = [
            (bearer(f"requester{c}"), bearer(f"approver{c}", "metadata_steward"))
            for c in range(args.clients)
        ]
        server, port = start_server(url, args.workers)
        # Warm up both workers (first requests import and cache what later ones reuse), as the
        # core's workers warm up in their first calls.
        http_phase(port, pairs, WARM_UP, "warm")
        http_wall, written = http_phase(port, pairs, per_client, "http")
        read_wall, read = read_phase(port, pairs[0][1], args.clients, args.reads)
        ok, counts = exactly_once(engine, 2 * total + WARM_UP * args.clients)

        print(
            f"PostgreSQL, {args.clients} concurrent clients; core: {args.clients} worker "
            f"processes calling the services; HTTP: mdstudio serve --workers {args.workers}, "
            f"http.client keep-alive clients in one process ({os.cpu_count()} cores)"
        )
        print(f"{'route':<32}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
        report(core, core_wall)
        report(written, http_wall)
        report(read, read_wall)
        core_rate, http_rate = total / core_wall, total / http_wall
        print(f"core approvals/s (submit+approve): {core_rate:.0f}")
        print(f"http approvals/s (submit+approve): {http_rate:.0f}")
        print(f"inbox reads/s: {args.reads / read_wall:.0f}")
        print(f"exactly once: {'yes' if ok else 'NO'} ({counts})")
        print(f"http/core approvals ratio: {http_rate / core_rate:.2f}")
        engine.dispose()
        if not ok:
            raise SystemExit(1)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
