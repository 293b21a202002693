"""Server memory for the largest inbox page: `mdstudio serve` (one worker) on PostgreSQL with
1,000 pending requests whose payload and current state are both near MDSTUDIO_MAX_PAYLOAD_BYTES.

Prints, side by side, the server's peak resident memory (VmHWM) after start-up, after
`GET /approvals?limit=1000` (payloads left out) and after the same with `include=payload`, with
each response's size and time.

    python bench/list_memory.py [--requests 1000]
    MDSTUDIO_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import sqlalchemy as sa

from mdstudio_core.adapters import migrations
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.approvals import DEFAULT_MAX_PAYLOAD_BYTES
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import approvals, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

ADMIN_URL = os.environ.get(
    "MDSTUDIO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def maximal_request(key: str, description: str) -> dict:
    """A valid request whose payload JSON is just under the default payload bound."""
    columns = []
    request = {
        "entity_type": "GLOBAL_METADATA",
        "entity_key": key,
        "tier": "tier2",
        "lane": "governed",
        "payload": {
            "canonical_key": key,
            "label": "Bench field",
            "description": description,
            "tier": "tier2",
            "domain": "bench",
            "owner": "bench",
            "data_type": "text",
            "binding": {"source": "warehouse", "table": "facts", "columns": columns},
        },
    }
    while True:
        column = {"name": f"c{len(columns)}", "allowed_values": [f"v{j:04d}" for j in range(20)]}
        columns.append(column)
        if len(orjson.dumps(request["payload"])) > DEFAULT_MAX_PAYLOAD_BYTES - 200:
            columns.pop()
            return request


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
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
        alice = Identity(tenant, "alice", frozenset())
        bob = Identity(tenant, "bob", frozenset({"metadata_steward"}))
        for i in range(args.requests):  # a live entity, then a pending change of it
            key = f"bench.k{i}"
            first = approvals.submit(
                UnitOfWork(engine), alice, maximal_request(key, "x" * 9000), Settings()
            )
            approvals.approve(UnitOfWork(engine), bob, first.id, None, Settings())
            approvals.submit(
                UnitOfWork(engine), alice, maximal_request(key, "y" * 9000), Settings()
            )
        secret, _ = tokens.create_token(UnitOfWork(engine), bob)
        headers = {"Authorization": f"Bearer {secret}"}
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "mdstudio_core.entrypoints.cli", "serve", "--port", str(port)],
            env={**os.environ, "MDSTUDIO_DATABASE_URL": url},
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        rows = [("after start-up", peak_rss_mib(server.pid), 0, 0.0)]
        for label, query in (
            ("GET /approvals?limit=1000", "status=pending&limit=1000"),
            ("... &include=payload", "status=pending&limit=1000&include=payload"),
        ):
            started = time.perf_counter()
            response = httpx.get(f"{base}/approvals?{query}", headers=headers, timeout=300)
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            assert len(response.json()["items"]) == min(args.requests, 1000)
            rows.append((label, peak_rss_mib(server.pid), len(response.content), elapsed))
        print(
            f"PostgreSQL, mdstudio serve (1 worker), {args.requests} pending requests, payload "
            f"and current state each about {DEFAULT_MAX_PAYLOAD_BYTES // 1024} KiB"
        )
        print(f"{'':<28}{'peak RSS MiB':>14}{'response MiB':>14}{'seconds':>10}")
        for label, rss, size, elapsed in rows:
            print(f"{label:<28}{rss:>14.0f}{size / 2**20:>14.1f}{elapsed:>10.2f}")
        engine.dispose()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
