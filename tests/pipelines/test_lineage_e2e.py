"""Lineage end to end, as `dagster dev` deploys it: one code server (`dagster code-server start`)
shared by a real `dagster-daemon` and a real `dagster-webserver`, Dagster's storage and the
mdstudio store on PostgreSQL. Approvals go in through the service; the asset graph is read from
the webserver's GraphQL, materializations and checks from Dagster's event log."""

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from demo import warehouse as demo_warehouse
from mdstudio_core.adapters import migrations
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.domain.lineage import tenant_label
from mdstudio_core.service_layer import approvals, profile_requests
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from mdstudio_pipelines.lib.asset_keys import KPI_CHECK
from mdstudio_pipelines.lib.dagster_internals import check_evaluations
from tests.pipelines.test_daemon import BIN, ROOT, Deployment, dagster_storage_url, wait_for
from tests.support.factories import SETTINGS, kpi_request, person

pytestmark = pytest.mark.postgres

REVENUE = "finance.revenue.gross_amount"
COST = "finance.cost.cost_amount"
KPI = "finance.kpi.gross_margin"
ASSET_NODES = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SharedDeployment(Deployment):
    """`Deployment`'s daemon and store, plus a webserver, both on one code server."""

    def __init__(self, tmp: Path, store_url: str, storage_url: str, warehouse_url: str):
        super().__init__(tmp, store_url, storage_url, warehouse_url)
        self.code_port, self.web_port = free_port(), free_port()
        self.webserver_url = f"http://127.0.0.1:{self.web_port}"
        self.env["MDSTUDIO_DAGSTER_WEBSERVER_URL"] = self.webserver_url
        self.workspace = tmp / "workspace.yaml"
        server = {"host": "127.0.0.1", "port": self.code_port, "location_name": "mdstudio"}
        self.workspace.write_text(yaml.safe_dump({"load_from": [{"grpc_server": server}]}))

    def spawn(self, name: str, *command: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [*command],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.groups.append(process.pid)
        setattr(self, name, process)

    def start(self) -> None:
        self.spawn(
            "code_server",
            str(BIN / "dagster"),
            "code-server",
            "start",
            "-m",
            "mdstudio_pipelines.definitions",
            "-a",
            "defs",
            "--location-name",
            "mdstudio",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.code_port),
        )
        wait_for(self.code_server_up, 120, "the code server")
        self.spawn(
            "webserver",
            str(BIN / "dagster-webserver"),
            "-w",
            str(self.workspace),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.web_port),
        )
        self.start_daemon()
        wait_for(lambda: self.graph() is not None, 120, "the webserver")

    def start_daemon(self) -> None:
        self.starts += 1
        self.spawn("daemon", str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace))
        self.wait_for_heartbeats(since=time.time())

    def code_server_up(self) -> bool:
        assert self.code_server.poll() is None, self.log_tail()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.code_port)) == 0

    def graph(self) -> dict[tuple[str, ...], set[tuple[str, ...]]] | None:
        """Asset key -> the keys it depends on, as the webserver's GraphQL shows them."""
        request = urllib.request.Request(
            f"{self.webserver_url}/graphql",
            data=json.dumps({"query": ASSET_NODES}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                nodes = json.load(response)["data"]["assetNodes"]
        except (OSError, KeyError, TypeError, ValueError):
            return None
        return {
            tuple(n["assetKey"]["path"]): {tuple(d["path"]) for d in n["dependencyKeys"]}
            for n in nodes
        }

    def automation(self, key: tuple[str, ...]) -> set[str]:
        """The sensors and schedules the UI shows as the asset's automation."""
        query = (
            "query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode"
            " { targetingInstigators { ... on Sensor { name } ... on Schedule { name } } } } }"
        )
        request = urllib.request.Request(
            f"{self.webserver_url}/graphql",
            data=json.dumps({"query": query, "variables": {"key": {"path": list(key)}}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            node = json.load(response)["data"]["assetNodeOrError"]
        return {instigator["name"] for instigator in node["targetingInstigators"]}

    def approve_kpi(self) -> None:
        request = kpi_request(tier="tier1")
        approval = approvals.submit(
            UnitOfWork(self.store), person(self.tenant, "alice"), request, SETTINGS
        )
        approvals.approve(
            UnitOfWork(self.store),
            person(self.tenant, "bob", "kernel_owner"),
            approval.id,
            None,
            SETTINGS,
        )

    def materializations(self, key: dg.AssetKey) -> list[dict]:
        records = self.instance.fetch_materializations(key, limit=50, ascending=True).records
        return [
            {k: getattr(v, "value", v) for k, v in r.asset_materialization.metadata.items()}
            for r in records
        ]

    def check_of(self, key: dg.AssetKey, trust_score: float):
        """The `kpi_inputs_quality` evaluation reported with this trust score."""
        history = check_evaluations(self.instance, dg.AssetCheckKey(key, KPI_CHECK), None, 50)
        evaluations = [
            h.event.dagster_event.asset_check_evaluation_data
            for h in history
            if h.event is not None and h.event.dagster_event is not None
        ]
        [evaluation] = [e for e in evaluations if e.metadata["trust_score"].value == trust_score]
        return evaluation

    def latest_score(self, key: str) -> float:
        return max(self.profiles(key), key=lambda row: row.created_at).quality_score

    def warehouse(self, statement: str) -> None:
        engine = sa.create_engine(self.env["MDSTUDIO_SOURCE_DEMO_URL"])
        with engine.begin() as connection:
            connection.exec_driver_sql(statement)
        engine.dispose()


@pytest.fixture(scope="module")
def shared(postgres_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lineage_e2e")
    store_url = postgres_server.create_database("mdstudio_lineage_store")
    storage_url = dagster_storage_url(postgres_server, "mdstudio_lineage_dagster")
    warehouse_url = demo_warehouse.build(tmp / "warehouse.db")
    engine = create_store_engine(store_url)
    migrations.upgrade(engine)
    engine.dispose()
    deployment = SharedDeployment(tmp, store_url, storage_url, warehouse_url)
    deployment.warehouse("CREATE TABLE costs AS SELECT * FROM orders")
    deployment.warehouse("CREATE TABLE refunds AS SELECT * FROM orders")
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
        for process in ("daemon", "webserver", "code_server"):
            with contextlib.suppress(AttributeError, subprocess.TimeoutExpired):
                getattr(deployment, process).wait(timeout=30)
        deployment.instance.dispose()
        deployment.store.dispose()


def test_kpi_trust_lineage_and_a_structural_change_on_the_live_graph(shared):
    tenant = tenant_label(shared.tenant, None)
    orders = (tenant, "demo", "main", "orders")
    costs = (tenant, "demo", "main", "costs")
    kpi = (tenant, "kpi", KPI)
    currencies = {"name": "currency", "allowed_values": ["EUR", "USD", "GBP"]}
    shared.approve(REVENUE, table="orders", columns=[{"name": "gross_amount", "min": 0}])
    shared.approve(COST, table="costs", columns=[currencies])
    shared.approve_kpi()

    # The graph: the KPI asset depends on the two table assets (a reload, nothing restarted).
    def kpi_in_graph():
        graph = shared.graph() or {}
        return graph.get(kpi) == {orders, costs}

    wait_for(kpi_in_graph, 120, "the KPI asset in the webserver's graph")
    assert shared.automation(orders) == {
        "approval_sensor",
        "profiling_pass_sensor",
        "tier1_profiling_schedule",
        "tier2_profiling_schedule",
    }

    # The profiles land: the KPI is materialized with the lower input score as its trust.
    kpi_key = dg.AssetKey(list(kpi))

    def trusted():
        found = shared.materializations(kpi_key)
        return found if found and found[-1]["trust_score"] is not None else None

    trusts = wait_for(trusted, 240, "a KPI materialization with a trust score")
    assert trusts[-1]["trust_score"] == min(shared.latest_score(REVENUE), shared.latest_score(COST))
    assert trusts[-1]["trust_score"] == 86.39  # gross_amount's (currency scores 91.43)
    assert shared.check_of(kpi_key, 86.39).passed is True
    assert shared.materializations(dg.AssetKey(list(orders)))[-1]["quality_score"] == 86.39

    # One input's data degrades and is profiled again: a lower trust, the check fails.
    shared.warehouse("UPDATE costs SET currency = 'XXX'")
    profile_requests.request_profile(
        UnitOfWork(shared.store), person(shared.tenant, "carol"), COST, force=True
    )

    def degraded():
        found = shared.materializations(kpi_key)
        return found if found[-1]["trust_score"] < 86.39 else None

    degraded_trust = wait_for(degraded, 240, "a lower KPI trust")[-1]
    assert degraded_trust["trust_score"] == shared.latest_score(COST) == 57.14
    assert degraded_trust["weakest_input"] == COST
    failed = shared.check_of(kpi_key, 57.14)
    assert failed.passed is False and failed.severity == dg.AssetCheckSeverity.ERROR

    # A structural change (a field bound to a new table) reaches the graph within 2 minutes.
    started = time.monotonic()
    shared.approve("finance.refunds.amount", table="refunds", columns=[{"name": "gross_amount"}])
    refunds = (tenant, "demo", "main", "refunds")
    wait_for(lambda: refunds in (shared.graph() or {}), 120, "the new table in the graph")
    elapsed = time.monotonic() - started
    print(f"a new binding reached the webserver's asset graph after {elapsed:.1f} s")
    assert elapsed < 120
