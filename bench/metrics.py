"""`/metrics` scrape time with a large catalog, on PostgreSQL and SQLite side by side.

Builds 10,000 tier1/tier2 fields over 5 tenants, each with 3 profiles (30,000 profiles and
their outbox events), 500 open incidents, 1,000 pending and 5,000 decided approvals, then
times the scrape's server work (`metrics.exposition`: every catalog query and the text) and a
scrape over HTTP from a real `mdstudio serve` (PostgreSQL). Medians of 7.

    python bench/metrics.py [--entities 10000]
    MDSTUDIO_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mdstudio_core.adapters import migrations, tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.entrypoints.http import metrics

ADMIN_URL = os.environ.get(
    "MDSTUDIO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
TENANTS = [uuid.uuid4() for _ in range(5)]
TOKEN = uuid.uuid4().hex  # /metrics is off without MDSTUDIO_METRICS_TOKEN
NOW = dt.datetime.now(dt.UTC)


def fill(engine: sa.Engine, entities: int) -> None:
    rng = random.Random(7)
    fields, profiles, events, incidents, requests = [], [], [], [], []
    for n in range(entities):
        tenant = TENANTS[n % len(TENANTS)]
        key = f"bench.domain{n % 50}.field{n}"
        tier = "tier1" if n % 4 == 0 else "tier2"
        fields.append(
            {
                "id": uuid.uuid4(),
                "tenant_id": tenant,
                "canonical_key": key,
                "tier": tier,
                "owner": "bench",
                "status": "active",
                "version": 1,
                "updated_at": NOW,
                "updated_by": "bench",
                "label": key,
                "description": "",
                "domain": "bench",
                "data_type": "text",
                "binding": None,
            }
        )
        for run in range(3):
            score = round(rng.uniform(50, 100), 2)
            profile_id = uuid.uuid4()
            at = NOW - dt.timedelta(days=3 - run)
            profiles.append(
                {
                    "id": profile_id,
                    "tenant_id": tenant,
                    "canonical_key": key,
                    "entity_urn": f"urn:mdstudio:{tenant}:metadata:{key}",
                    "quality_score": score,
                    "row_count": 1000,
                    "duration_ms": rng.randint(50, 30_000),
                    "created_at": at,
                    "run_id": f"run-{run}-{n}",
                }
            )
            events.append(
                {
                    "type": "metadata.profile.completed",
                    "tenant_id": tenant,
                    "entity_type": "GLOBAL_METADATA",
                    "entity_key": key,
                    "correlation_id": profile_id,
                    "actor": "bench",
                    "occurred_at": at,
                    "payload": {"tier": tier, "quality_score": score, "check_passed": score >= 80},
                }
            )
        if n % 20 == 0:
            incidents.append(
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant,
                    "canonical_key": key,
                    "tier": tier,
                    "status": "open",
                    "opened_at": NOW,
                    "last_score": 40.0,
                }
            )
        if n < 6000:
            status = "pending" if n < 1000 else rng.choice(["approved", "rejected", "cancelled"])
            requests.append(
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant,
                    "entity_type": "GLOBAL_METADATA",
                    "entity_key": key,
                    "tier": tier,
                    "lane": "kernel" if tier == "tier1" else "governed",
                    "payload": {},
                    "status": status,
                    "requested_by": "alice",
                    "requested_at": NOW - dt.timedelta(hours=rng.randint(1, 100)),
                    "decided_at": None if status == "pending" else NOW,
                    "decided_by": None if status == "pending" else "bob",
                    "required_role": "kernel_owner",
                }
            )
    with engine.begin() as connection:
        for table, rows in (
            (tables.global_metadata, fields),
            (tables.profiles, profiles),
            (tables.events, events),
            (tables.quality_incidents, incidents),
            (tables.approvals, requests),
        ):
            for start in range(0, len(rows), 5000):
                connection.execute(sa.insert(table), rows[start : start + 5000])


def median_seconds(action, repeats: int = 7) -> float:
    action()  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_scrape(url: str) -> float:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mdstudio_core.entrypoints.cli",
            "serve",
            "--port",
            str(port),
            "--no-access-log",
        ],
        env={**os.environ, "MDSTUDIO_DATABASE_URL": url, "MDSTUDIO_METRICS_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        scraper = {"Authorization": f"Bearer {TOKEN}"}
        return median_seconds(
            lambda: httpx.get(f"{base}/metrics", headers=scraper, timeout=60).raise_for_status()
        )
    finally:
        server.terminate()
        server.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entities", type=int, default=10_000)
    entities = parser.parse_args().entities
    settings = Settings.from_env({})
    name = f"mdstudio_bench_metrics_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    pg_url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    folder = tempfile.mkdtemp()
    sqlite_url = f"sqlite:///{folder}/bench.db"
    try:
        results = {}
        for label, url in (("postgresql", pg_url), ("sqlite", sqlite_url)):
            engine = create_store_engine(url)
            migrations.upgrade(engine)
            fill(engine, entities)
            if label == "postgresql":
                with engine.connect() as connection:
                    connection.execute(sa.text("ANALYZE"))
            body, _ = metrics.exposition(engine, settings)
            series = sum(
                1 for line in body.decode().splitlines() if line and not line.startswith("#")
            )
            results[label] = (
                median_seconds(lambda e=engine: metrics.exposition(e, settings)),
                series,
            )
            engine.dispose()
        scrape = http_scrape(pg_url)
        print(f"/metrics with {entities} fields, 30,000 profiles, 6,000 approvals (median of 7)")
        print(f"{'store':<12}{'server work':>14}{'series':>10}")
        for label, (seconds, series) in results.items():
            print(f"{label:<12}{seconds * 1000:>11.0f} ms{series:>10}")
        print(f"HTTP scrape of mdstudio serve on PostgreSQL: {scrape * 1000:.0f} ms")
        print(f"sqlite/postgresql ratio: {results['sqlite'][0] / results['postgresql'][0]:.2f}")
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
