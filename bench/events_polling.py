"""Approvals per second on PostgreSQL while clients poll `GET /events`, against no polling, in
one run.

`mdstudio serve` in a subprocess. In the bench process `--clients` clients submit and approve
requests without pause (each a requester and an approver token). In a second process
`--pollers` consumers each tail the tenant's event stream `--rate` times a second
(`after=next_after`, as a consumer does), but only during the polled slices: the run alternates
quiet and polled slices of `--slice` seconds, so both rates see the same machine (on a noisy one,
adjacent slices share its mood). The server, PostgreSQL and both kinds of clients share the
machine, so the polling's own CPU counts. Prints the median approvals/s of each kind of slice and
their ratio, the median ratio of adjacent slices and the polls made, then checks that every
approval was applied exactly once and that every consumer saw every event once, in order.

    python bench/events_polling.py [--slices 20] [--slice 3] [--clients 4] [--pollers 4]
                                   [--rate 10] [--workers 2]
    MDSTUDIO_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from multiprocessing.synchronize import Event as ProcessEvent

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
Headers = dict[str, str]


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


def ok(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response


# -- the approving clients (bench process) ----------------------------------------------------


async def approve_until(
    base: str, pairs: list[tuple[Headers, Headers]], deadline: float
) -> list[float]:
    """Submit-then-approve pairs until `deadline`; the time each approval completed."""
    done: list[float] = []

    async def client_loop(index: int, requester: Headers, approver: Headers) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            i = 0
            while time.monotonic() < deadline:
                key = f"bench.c{index}.k{i}"
                submitted = await client.post("/approvals", json=request(key), headers=requester)
                approval_id = ok(submitted).json()["id"]
                ok(await client.post(f"/approvals/{approval_id}/approve", headers=approver))
                done.append(time.monotonic())
                i += 1

    await asyncio.gather(*(client_loop(i, r, a) for i, (r, a) in enumerate(pairs)))
    return done


# -- the consumers (a process of their own) ---------------------------------------------------


async def tail(base: str, headers: Headers, rate: float, polling: ProcessEvent, stop: ProcessEvent):
    """Poll `rate` times a second while `polling` is set (a late poll is not made up for), until
    `stop`; then read to the end. Returns every id seen, in order, and the polls made."""
    seen: list[int] = []
    polls = 0

    async def poll(client: httpx.AsyncClient) -> int:
        nonlocal polls
        after = seen[-1] if seen else 0
        page = ok(await client.get(f"/events?after={after}&limit=1000", headers=headers))
        polls += 1
        items = page.json()["items"]
        seen.extend(event["id"] for event in items)
        return len(items)

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        next_at = time.monotonic()
        while not stop.is_set():
            if polling.is_set():
                await poll(client)
            next_at = max(next_at + 1 / rate, time.monotonic())
            await asyncio.sleep(next_at - time.monotonic())
        counted = polls
        while await poll(client):
            pass
    return seen, counted


def consumers(
    base: str,
    headers: list[Headers],
    rate: float,
    polling: ProcessEvent,
    stop: ProcessEvent,
    results: multiprocessing.Queue,
) -> None:
    async def run() -> list[tuple[list[int], int]]:
        return await asyncio.gather(*(tail(base, h, rate, polling, stop) for h in headers))

    results.put(asyncio.run(run()))


# -- the run ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(url: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "mdstudio_core.entrypoints.cli", "serve"),
            *("--port", str(port), "--workers", str(workers), "--no-access-log"),
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


async def alternate(
    base: str,
    pairs: list[tuple[Headers, Headers]],
    polling: ProcessEvent,
    slices: int,
    length: float,
) -> tuple[list[float], list[float]]:
    """Approve without pause for `slices` slices, polling during every other one (the first
    is quiet); returns each slice's start and the approvals' completion times."""
    start = time.monotonic() + 1
    starts = [start + i * length for i in range(slices + 1)]

    async def switch() -> None:
        for i, at in enumerate(starts[:-1]):
            await asyncio.sleep(at - time.monotonic())
            (polling.set if i % 2 else polling.clear)()

    approving = asyncio.create_task(approve_until(base, pairs, starts[-1]))
    await switch()
    return starts, await approving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=20, help="slices (half of them polled)")
    parser.add_argument("--slice", type=float, default=3.0, help="seconds per slice")
    parser.add_argument("--clients", type=int, default=4, help="concurrent approving clients")
    parser.add_argument("--pollers", type=int, default=4, help="consumers polling /events")
    parser.add_argument("--rate", type=float, default=10.0, help="polls per second per consumer")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    args = parser.parse_args()
    slices = args.slices + args.slices % 2

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

        def bearer(user: str, *roles: str) -> Headers:
            secret, _ = tokens.create_token(
                UnitOfWork(engine), Identity(tenant, user, frozenset(roles))
            )
            return {"Authorization": f"Bearer {secret}"}

        pairs = [
            (bearer(f"requester{c}"), bearer(f"approver{c}", "metadata_steward"))
            for c in range(args.clients)
        ]
        server, base = start_server(url, args.workers)
        spawn = multiprocessing.get_context("spawn")
        polling, stop, results = spawn.Event(), spawn.Event(), spawn.Queue()
        poller = spawn.Process(
            target=consumers,
            args=(
                base,
                [bearer(f"consumer{p}") for p in range(args.pollers)],
                args.rate,
                polling,
                stop,
                results,
            ),
        )
        poller.start()
        starts, done = asyncio.run(alternate(base, pairs, polling, slices, args.slice))
        stop.set()
        tails = results.get(timeout=120)
        poller.join()

        per_slice = [
            sum(1 for at in done if begin <= at < end) / args.slice
            for begin, end in itertools.pairwise(starts)
        ]
        quiet, polled = per_slice[0::2], per_slice[1::2]
        adjacent = [p / q for q, p in zip(quiet, polled, strict=True) if q]
        polls = sum(counted for _, counted in tails)
        print(
            f"PostgreSQL, mdstudio serve --workers {args.workers}, {args.clients} approving "
            f"clients; polled slices: {args.pollers} consumers x {args.rate:g} GET /events per "
            f"second; {slices} slices of {args.slice:g} s alternating ({os.cpu_count()} cores)"
        )
        print(f"{'':<28}{'quiet':>10}{'polled':>10}{'ratio':>8}")
        print(
            f"{'approvals/s (median slice)':<28}{statistics.median(quiet):>10.1f}"
            f"{statistics.median(polled):>10.1f}"
            f"{statistics.median(polled) / statistics.median(quiet):>8.2f}"
        )
        print(f"{'adjacent slices (median)':<28}{'':>20}{statistics.median(adjacent):>8.2f}")
        print(f"polls: {polls / (len(polled) * args.slice):.1f}/s during the polled slices")

        with engine.connect() as connection:
            approved = connection.execute(
                sa.select(sa.func.count()).where(tables.approvals.c.status == "approved")
            ).scalar_one()
            every_id = list(
                connection.execute(sa.select(tables.events.c.id).order_by(tables.events.c.id))
                .scalars()
                .all()
            )
        exactly_once = approved == len(done) and len(every_id) == 4 * approved
        none_skipped = all(seen == every_id for seen, _ in tails)
        print(
            f"exactly once: {'yes' if exactly_once else 'NO'} ({approved} approved, "
            f"{len(every_id)} events); every consumer saw every event once, in order: "
            f"{'yes' if none_skipped else 'NO'}"
        )
        engine.dispose()
        if not (exactly_once and none_skipped):
            raise SystemExit(1)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
