"""The catalog as Dagster's asset graph, at scale: 1,000 bound fields on 100 tables and 200 KPIs
across 5 tenants (the issue's figures), the store on PostgreSQL.

Prints medians of:
  1. building the definitions in process (the store read, the snapshot, the assets);
  2. the code location's load as Dagster does it: a `dagster code-server start` process from
     spawn until the webserver's GraphQL lists every asset (cold: imports included), then
     `reloadRepositoryLocation` round trips (warm: what a structural change costs);
  3. the GraphQL `assetNodes` query the UI's asset graph runs (keys and dependencies).

    python bench/lineage.py [--fields 1000 --tables 100 --kpis 200 --tenants 5 --repeat 5]
"""

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mdstudio_core.adapters import migrations  # noqa: E402
from mdstudio_core.adapters.database import create_store_engine  # noqa: E402
from mdstudio_core.domain.model import EntityType  # noqa: E402
from mdstudio_core.service_layer.unit_of_work import UnitOfWork  # noqa: E402

ADMIN_URL = os.environ.get(
    "MDSTUDIO_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BIN = Path(sys.executable).parent
ASSET_NODES = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
RELOAD = (
    'mutation { reloadRepositoryLocation(repositoryLocationName: "mdstudio") '
    "{ __typename ... on WorkspaceLocationEntry { loadStatus } } }"
)


def create_database(admin: sa.Engine, label: str) -> str:
    name = f"mdstudio_bench_{label}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def build_catalog(store: sa.Engine, fields: int, tables: int, kpis: int, tenants: int) -> int:
    """The catalog, written straight through the repositories (approvals are benched
    elsewhere): fields spread evenly over tables, tables and KPIs over tenants, each KPI on
    3 fields of its tenant (often on different tables). Returns the expected asset count."""
    now = dt.datetime.now(dt.UTC)
    tenant_ids = [uuid.uuid4() for _ in range(tenants)]
    per_table = fields // tables
    keys: dict[uuid.UUID, list[str]] = {t: [] for t in tenant_ids}
    with UnitOfWork(store) as uow:
        for index, tenant in enumerate(tenant_ids):
            uow.lineage.set_tenant_name(tenant, f"tenant_{index}", "bench", now)
        for table in range(tables):
            tenant = tenant_ids[table % tenants]
            for column in range(per_table):
                key = f"bench.t{table:03d}.c{column:02d}"
                keys[tenant].append(key)
                state = {
                    "canonical_key": key,
                    "label": key,
                    "description": "",
                    "tier": "tier1" if column % 2 else "tier2",
                    "domain": "bench",
                    "owner": f"owner{table % 7}@example.com",
                    "data_type": "integer",
                    "status": "active",
                    "binding": {
                        "source": "bench",
                        "schema": "public",
                        "table": f"table_{table:03d}",
                        "columns": [{"name": f"c{column:02d}", "min": 0}],
                    },
                }
                uow.entities.insert(
                    EntityType.GLOBAL_METADATA, tenant, uuid.uuid4(), state, "bench", now
                )
        for number in range(kpis):
            tenant = tenant_ids[number % tenants]
            pool = keys[tenant]
            inputs = sorted({pool[(number * 7 + step * 13) % len(pool)] for step in range(3)})
            state = {
                "canonical_key": f"bench.kpi.k{number:03d}",
                "name": f"KPI {number}",
                "description": "",
                "expression": "+".join(inputs),
                "depends_on": inputs,
                "tier": "tier1" if number % 3 == 0 else "tier2",
                "owner": "finance",
                "status": "active",
            }
            uow.entities.insert(EntityType.KPI, tenant, uuid.uuid4(), state, "bench", now)
        uow.commit()
    return tables + kpis + 2  # and catalog_entity, entity_profile


def graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)["data"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, KeyError, TypeError, ValueError):
            value = predicate()
            if value:
                return value
        time.sleep(0.1)
    raise TimeoutError(what)


def code_server_command(port: int) -> list[str]:
    """The project's code location served on its own, for a webserver to load."""
    return [
        str(BIN / "dagster"),
        "code-server",
        "start",
        "-m",
        "mdstudio_pipelines.definitions",
        "-a",
        "defs",
        "--location-name",
        "mdstudio",
        "-p",
        str(port),
    ]


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fields", type=int, default=1000)
    parser.add_argument("--tables", type=int, default=100)
    parser.add_argument("--kpis", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    store_url = create_database(admin, "lineage")
    home = Path(tempfile.mkdtemp(prefix="mdstudio_bench_lineage_"))
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MDSTUDIO_DATABASE_URL": store_url,
        "MDSTUDIO_SOURCE_BENCH_URL": store_url,  # only its dialect is read when loading
        "MDSTUDIO_DAGSTER_WEBSERVER_URL": "http://127.0.0.1:9",  # no reload from a sensor
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    store = create_store_engine(store_url)
    processes: list[subprocess.Popen] = []
    try:
        migrations.upgrade(store)
        expected = build_catalog(store, args.fields, args.tables, args.kpis, args.tenants)
        print(
            f"catalog: {args.fields} fields on {args.tables} tables, {args.kpis} KPIs, "
            f"{args.tenants} tenants -> {expected} assets"
        )

        from mdstudio_pipelines.definitions import defs  # after the environment

        builds = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            built = defs()
            built.resolve_asset_graph()
            builds.append(time.perf_counter() - started)
        assert len(built.resolve_all_asset_keys()) == expected
        print(f"1. definitions built in process: median {statistics.median(builds):.2f} s")

        code_port, web_port = free_port(), free_port()
        url = f"http://127.0.0.1:{web_port}"
        workspace = home / "workspace.yaml"
        server = {"host": "127.0.0.1", "port": code_port, "location_name": "mdstudio"}
        workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": server}]}))
        webserver = spawn(
            [str(BIN / "dagster-webserver"), "-w", str(workspace), "-p", str(web_port)],
            env,
            home / "webserver.log",
        )
        processes.append(webserver)
        wait(lambda: graphql(url, "{ version }"), 120, "the webserver")
        started = time.perf_counter()
        code_server = spawn(
            code_server_command(code_port),
            env,
            home / "code_server.log",
        )
        processes.append(code_server)

        def loaded() -> bool:
            graphql(url, RELOAD)  # the webserver fetches the location again
            return len(graphql(url, ASSET_NODES)["assetNodes"]) == expected

        wait(loaded, 300, "the code location in the webserver")
        cold = time.perf_counter() - started
        print(f"2. code location, cold (spawn to every asset in GraphQL): {cold:.2f} s")

        reloads = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            status = graphql(url, RELOAD)["reloadRepositoryLocation"]
            reloads.append(time.perf_counter() - started)
            assert status.get("loadStatus") == "LOADED", status
        print(f"   reloadRepositoryLocation (warm load): median {statistics.median(reloads):.2f} s")

        queries = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            nodes = graphql(url, ASSET_NODES)["assetNodes"]
            queries.append(time.perf_counter() - started)
        edges = sum(len(n["dependencyKeys"]) for n in nodes)
        print(
            f"3. GraphQL assetNodes ({len(nodes)} nodes, {edges} edges): "
            f"median {statistics.median(queries) * 1000:.0f} ms"
        )
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        store.dispose()
        with admin.connect() as connection:
            name = sa.make_url(store_url).database
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
