"""The steward console's inbox with 1,000 pending requests: how long `GET /ui/` takes.

`mdstudio serve` runs in its own process on a fresh PostgreSQL database holding 1,000 pending
kernel requests (and as many decided ones beside them); a kernel owner signs in through the
login form and reads the inbox over one keep-alive connection. The server time is the page's
`Server-Timing` (from the route's start, session lookup and queries included, to the rendered
page); the client time adds the framework, the socket and loopback. The issue's target: a
server time under 150 ms.

Prints the medians and the server p90 for the first page (100 rows, the default), the last
page (offset 900) and one page of all 1,000 rows (`per_page=1000`).

    python bench/console.py [--pending 1000] [--reads 50]
    MDSTUDIO_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import uuid
from urllib.parse import urlencode

import sqlalchemy as sa

from mdstudio_core.adapters import migrations
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import approvals, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

ADMIN_URL = os.environ.get(
    "MDSTUDIO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
WARM_UP = 10
SERVE = [sys.executable, "-m", "mdstudio_core.entrypoints.cli", "serve", "--no-access-log"]
TARGET_MS = 150.0


def request(key: str) -> dict:
    return {
        "entity_type": "GLOBAL_METADATA",
        "tier": "tier1",
        "lane": "kernel",
        "payload": {
            "canonical_key": key,
            "label": "Gross amount",
            "description": "Order revenue before discounts and tax",
            "tier": "tier1",
            "domain": "finance",
            "owner": "finance-data",
            "data_type": "decimal(18,2)",
            "binding": {
                "source": "warehouse",
                "schema": "sales",
                "table": "orders",
                "columns": [{"name": "gross_amount", "min": 0}],
            },
        },
    }


def populate(engine: sa.Engine, tenant: uuid.UUID, pending: int) -> None:
    """`pending` pending requests, and as many decided ones the inbox must skip."""
    requester = Identity(tenant, "alice", frozenset())
    decider = Identity(tenant, "bob", frozenset({"kernel_owner"}))
    for i in range(pending * 2):
        approval = approvals.submit(
            UnitOfWork(engine), requester, request(f"bench.f{i:05d}"), Settings()
        )
        if i % 2:
            approvals.reject(UnitOfWork(engine), decider, approval.id, "bench")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(url: str, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [*SERVE, "--port", str(port)],
        env={**os.environ, "MDSTUDIO_DATABASE_URL": url},
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            return server
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("mdstudio serve did not start") from None
            time.sleep(0.1)


def sign_in(connection: http.client.HTTPConnection, secret: str) -> str:
    """The session cookie, through the login form as a browser gets it."""
    connection.request("GET", "/ui/login")
    page = connection.getresponse()
    html = page.read().decode()
    login_csrf = page.getheader("set-cookie", "").split(";")[0]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    connection.request(
        "POST",
        "/ui/login",
        body=urlencode({"token": secret, "csrf_token": csrf}),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": login_csrf},
    )
    answer = connection.getresponse()
    answer.read()
    assert answer.status == 303, answer.status
    cookies = [v for k, v in answer.getheaders() if k.lower() == "set-cookie"]
    return next(c.split(";")[0] for c in cookies if c.startswith("mdstudio_session="))


def timed_reads(
    connection: http.client.HTTPConnection, cookie: str, path: str, reads: int, rows: int
) -> tuple[list[float], list[float]]:
    """(server times from `Server-Timing`, client times), in ms, of `reads` reads of `path`."""
    server, client = [], []
    for i in range(WARM_UP + reads):
        start = time.perf_counter()
        connection.request("GET", path, headers={"Cookie": cookie})
        response = connection.getresponse()
        html = response.read()
        elapsed = (time.perf_counter() - start) * 1000
        assert response.status == 200, response.status
        if i == 0:
            found = html.count(b'data-testid="inbox-row"')
            assert found == rows, f"{path}: {found} rows, expected {rows}"
        if i >= WARM_UP:
            timing = response.getheader("server-timing", "")
            server.append(float(timing.partition("dur=")[2]))
            client.append(elapsed)
    return server, client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=50, help="timed reads per page")
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
        started = time.perf_counter()
        populate(engine, tenant, args.pending)
        print(
            f"{args.pending} pending requests (and {args.pending} decided) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        secret, _ = tokens.create_token(
            UnitOfWork(engine), Identity(tenant, "olga", frozenset({"kernel_owner"}))
        )
        port = free_port()
        server = start_server(url, port)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        cookie = sign_in(connection, secret)
        last = max(0, args.pending - 100)
        for label, path, rows in (
            ("first page (100 rows)", "/ui/", min(100, args.pending)),
            (f"last page (offset {last})", f"/ui/?offset={last}", args.pending - last),
            (
                f"every row (per_page=1000, {min(1000, args.pending)} rows)",
                "/ui/?per_page=1000",
                min(1000, args.pending),
            ),
        ):
            server_ms, client_ms = timed_reads(connection, cookie, path, args.reads, rows)
            median = statistics.median(server_ms)
            p90 = statistics.quantiles(server_ms, n=10)[-1]
            verdict = "under" if median < TARGET_MS else "OVER"
            print(
                f"inbox {label}: server median {median:.1f} ms, p90 {p90:.1f} ms "
                f"({verdict} the {TARGET_MS:.0f} ms target); client median "
                f"{statistics.median(client_ms):.1f} ms"
            )
        engine.dispose()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=15)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
