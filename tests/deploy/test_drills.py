"""Drills that lose nothing: the Compose deployment (deploy/compose/compose.yaml, one container
per profiling run) running here in Docker, broken on purpose while it works. Each drill checks
its outcome from the store and Dagster's run records, and appends its measured figures to
build/drills/results.txt (`make drill` prints them; the README's "Deploying" section quotes
them). Marked `docker`: `make drill` runs them, `make test` does not."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa

from demo.warehouse import ORDERS
from mdstudio_core.adapters import tables
from mdstudio_pipelines.lib.audit import timeline
from tests.deploy.conftest import ROOT
from tests.deploy.stack import POSTGRES_IMAGE, Stack, docker, wait_for
from tests.support.factories import KERNEL_OWNER, metadata_request

pytestmark = pytest.mark.docker

RESULTS = ROOT / "build/drills/results.txt"
COLUMNS = [{"name": "gross_amount", "min": 0}, {"name": "currency", "allowed_values": ["EUR"]}]


def record(drill: str, figures: str) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as results:
        results.write(f"{time.strftime('%Y-%m-%d %H:%M')} {drill}: {figures}\n")


@pytest.fixture(scope="module")
def stack(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One deployment for the drills of this module, down before any other test runs."""
    # PostgreSQL from Debian's packages, built once (about 2 minutes) and kept.
    script = Path(__file__).parent / "postgres_image.sh"
    subprocess.run([str(script), POSTGRES_IMAGE], check=True, capture_output=True)
    deployment = Stack(tmp_path_factory.mktemp("stack"), image)
    started = time.monotonic()
    try:
        deployment.up()
        record("stack", f"compose up to every service ready in {time.monotonic() - started:.0f} s")
        yield deployment
    except Exception:
        print(deployment.logs())
        raise
    finally:
        deployment.down()


def orders_table(stack: Stack, name: str) -> None:
    rows = ", ".join(
        "({}, {}, '{}', {})".format(
            order,
            "NULL" if gross is None else gross,
            currency,
            "NULL" if email is None else f"'{email}'",
        )
        for order, gross, currency, email in ORDERS
    )
    stack.warehouse(
        [
            f"CREATE TABLE {name} (order_id integer, gross_amount double precision,"
            " currency varchar(3), customer_email varchar(200))",
            f"INSERT INTO {name} VALUES {rows}",
        ]
    )


def field_request(key: str, table: str) -> dict:
    binding = {"source": "warehouse", "schema": "public", "table": table, "columns": COLUMNS}
    return metadata_request(key=key, binding=binding)


class Client:
    """A client of the two replicas that retries a request on the other replica, with the same
    Idempotency-Key, when its replica does not answer or answers 5xx."""

    def __init__(self, stack: Stack, headers: dict[str, str], first: str = "api-1") -> None:
        self.stack, self.headers, self.first = stack, headers, first
        self.retries = Counter[str]()
        self.replayed = 0

    def post(self, path: str, body: dict | None, key: str, deadline: float = 180) -> dict:
        replicas = [self.first, "api-2" if self.first == "api-1" else "api-1"]
        give_up = time.monotonic() + deadline
        attempt = 0
        while True:
            replica = replicas[attempt % 2]
            attempt += 1
            try:
                response = httpx.post(
                    self.stack.url(replica) + path,
                    json=body,
                    headers={**self.headers, "Idempotency-Key": key},
                    timeout=30,
                )
            except httpx.HTTPError as error:
                self.retries[type(error).__name__] += 1
            else:
                if response.status_code < 500:
                    assert response.status_code in (200, 201), response.text
                    self.replayed += response.headers.get("idempotent-replayed") == "true"
                    return response.json()  # type: ignore[no-any-return]
                self.retries[str(response.status_code)] += 1
            assert time.monotonic() < give_up, f"{path} never succeeded: {self.retries}"
            time.sleep(0.5)

    def submit_and_approve(self, approver: Client, key: str, table: str) -> str:
        submitted = self.post("/approvals", field_request(key, table), f"submit-{key}")
        approver.post(f"/approvals/{submitted['id']}/approve", None, f"approve-{key}")
        return str(submitted["id"])


def approvals_applied(stack: Stack, tenant: uuid.UUID) -> Counter[str]:
    """How often each of the tenant's approvals was applied (its `approval.approved` events)."""
    with stack.store.connect() as connection:
        rows = connection.execute(
            sa.select(tables.events.c.correlation_id).where(
                tables.events.c.tenant_id == tenant, tables.events.c.type == "approval.approved"
            )
        )
        return Counter(str(row.correlation_id) for row in rows)


def profiles_by_key(stack: Stack, tenant: uuid.UUID) -> Counter[str]:
    return Counter(profile.canonical_key for profile in stack.profiles(tenant))


def test_a_run_container_killed_mid_profile_is_failed_and_retried(stack):
    """`docker kill` of a run's container while its query runs: run monitoring fails the run,
    run retries profile again in a new container; each due entity ends with one profile for
    its approval, and the quality check ran once per saved profile."""
    orders_table(stack, "orders_base")
    stack.warehouse(
        [
            "CREATE TABLE drill_gate (slow boolean)",
            "INSERT INTO drill_gate VALUES (true)",
            # Every read of the view waits while the gate is up.
            "CREATE VIEW slow_orders AS SELECT o.* FROM orders_base o, (SELECT pg_sleep("
            "CASE WHEN (SELECT bool_or(slow) FROM drill_gate) THEN 60 ELSE 0 END)) AS gate",
        ]
    )
    tenant = uuid.uuid4()
    alice = Client(stack, stack.token(tenant, "alice"))
    bob = Client(stack, stack.token(tenant, "bob", KERNEL_OWNER))
    keys = [f"finance.killed.amount_{n}" for n in range(3)]
    approvals = {key: alice.submit_and_approve(bob, key, "slow_orders") for key in keys}

    def profiling() -> dg.DagsterRun | None:
        runs = [r for r in stack.runs(tenant) if r.status == dg.DagsterRunStatus.STARTED]
        return runs[0] if runs and _sleeping_in_warehouse(stack) else None

    run = wait_for(profiling, 300, "a run's query on the slow view")
    container = run.tags["docker/container_id"]
    docker("kill", container)
    killed = time.monotonic()
    stack.warehouse(["UPDATE drill_gate SET slow = false"])  # the retry reads at once

    def failed() -> bool:
        return stack.instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE

    wait_for(failed, 300, "run monitoring to fail the killed run", every=2)
    failed_after = time.monotonic() - killed

    def retried() -> dg.DagsterRun | None:
        retries = [
            r for r in stack.runs(tenant) if r.tags.get("dagster/parent_run_id") == run.run_id
        ]
        done = retries and retries[0].status == dg.DagsterRunStatus.SUCCESS
        return retries[0] if done and len(stack.profiles(tenant)) == len(keys) else None

    retry = wait_for(retried, 300, "the retry to profile again", every=2)
    retried_after = time.monotonic() - killed
    assert retry.tags["docker/container_id"] != container  # a container of its own
    assert retry.tags["mdstudio/source"] == "warehouse"
    profiles = stack.profiles(tenant)
    assert profiles_by_key(stack, tenant) == Counter(keys)  # one each
    assert {p.canonical_key: str(p.approval_id) for p in profiles} == approvals
    for key in keys:
        kinds = Counter(entry["kind"] for entry in timeline(stack.instance, tenant, key))
        assert kinds["materialization"] == kinds["check"] == 1, key
    record(
        "run container killed",
        f"{len(keys)} entities; run failed by run monitoring {failed_after:.0f} s after the kill,"
        f" retry succeeded {retried_after:.0f} s after it; 1 profile and 1 check per entity",
    )


def _sleeping_in_warehouse(stack: Stack) -> bool:
    engine = sa.create_engine(stack.warehouse_url)
    with engine.connect() as connection:
        sleeping = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'warehouse'"
                " AND state = 'active' AND query LIKE :view"
            ),
            {"view": "%slow_orders%"},
        ).scalar_one()
    engine.dispose()
    return bool(sleeping)


def test_the_daemon_killed_mid_tick_and_restarted_skips_nothing_and_doubles_nothing(stack):
    """Approvals arrive; the daemon's container is killed as the first of the tick's runs
    appears, then started again: every due entity is profiled exactly once, by runs whose
    keys are all different."""
    tenant = uuid.uuid4()
    tables_ = [f"orders_tick_{n}" for n in range(8)]
    for name in tables_:
        orders_table(stack, name)
    alice = Client(stack, stack.token(tenant, "alice"))
    bob = Client(stack, stack.token(tenant, "bob", KERNEL_OWNER))
    keys = [f"finance.tick.amount_{n}" for n in range(len(tables_))]
    for key, table in zip(keys, tables_, strict=True):
        alice.submit_and_approve(bob, key, table)
    wait_for(lambda: stack.runs(tenant), 300, "the tick's first run", every=0.2)
    docker("kill", stack.container("daemon"))
    runs_at_kill = len(stack.runs(tenant))
    killed = time.monotonic()
    stack.compose("start", "daemon")
    stack.wait_daemon()

    def all_profiled() -> bool:
        runs = stack.runs(tenant)
        return all(r.is_finished for r in runs) and len(profiles_by_key(stack, tenant)) == len(keys)

    wait_for(all_profiled, 600, "every due entity profiled", every=2)
    recovered = time.monotonic() - killed
    time.sleep(10)  # later ticks launch nothing more
    runs = stack.runs(tenant)
    assert profiles_by_key(stack, tenant) == Counter(keys)
    run_keys = [r.tags["dagster/run_key"] for r in runs if "dagster/retry_number" not in r.tags]
    assert len(run_keys) == len(set(run_keys))
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
    record(
        "daemon killed mid-tick",
        f"{len(keys)} due entities, {runs_at_kill} of {len(runs)} runs queued when killed;"
        f" all profiled once {recovered:.0f} s after the kill, no run key twice",
    )


def test_postgres_restarting_under_approvals_and_runs_loses_nothing(stack):
    """PostgreSQL stops (fast shutdown) while clients submit and approve and a run profiles, and
    starts again: the API answers 503 meanwhile and recovers without a restart; afterwards
    every approval is applied once and every due profile saved once."""
    tenant = uuid.uuid4()
    tables_ = [f"orders_pg_{n}" for n in range(4)]
    for name in tables_:
        orders_table(stack, name)
    alice = Client(stack, stack.token(tenant, "alice"))
    bob = Client(stack, stack.token(tenant, "bob", KERNEL_OWNER), first="api-2")
    started_at = {r: _started_at(stack, r) for r in ("api-1", "api-2")}
    submitted: list[str] = []
    keys: list[str] = []
    recovered_event = threading.Event()

    def load() -> None:
        """Submit and approve until a few approvals went through after the outage."""
        after = 0
        while after < 3:
            key = f"finance.pg.amount_{len(keys)}"
            keys.append(key)
            submitted.append(alice.submit_and_approve(bob, key, tables_[len(keys) % 4]))
            after += recovered_event.is_set()
            time.sleep(0.3)

    client = threading.Thread(target=load)
    client.start()
    wait_for(
        lambda: [r for r in stack.runs(tenant) if r.status == dg.DagsterRunStatus.STARTED],
        300,
        "a run in flight",
        every=0.5,
    )
    postgres = stack.container("postgres")
    docker("kill", "--signal", "SIGINT", postgres)  # fast shutdown
    down = time.monotonic()
    statuses = Counter[int | None]()
    while time.monotonic() - down < 10:
        statuses[stack.healthz("api-1")] += 1
        time.sleep(0.5)
    docker("start", postgres)
    wait_for(lambda: stack.healthz("api-1") == stack.healthz("api-2") == 200, 120, "recovery")
    recovered = time.monotonic() - down
    recovered_event.set()
    stack.store.dispose()  # this process's connections died with the server too
    client.join(300)
    assert not client.is_alive()
    assert statuses[503] > 0, statuses
    retried = sum(alice.retries.values()) + sum(bob.retries.values())
    assert retried > 0  # approvals did arrive during the outage
    assert {r: _started_at(stack, r) for r in started_at} == started_at  # never restarted

    def all_profiled() -> bool:
        runs = stack.runs(tenant)
        done = runs and all(r.is_finished for r in runs)
        return bool(done) and len(profiles_by_key(stack, tenant)) == len(keys)

    wait_for(all_profiled, 600, "every due profile", every=2)
    assert len(set(submitted)) == len(keys)
    assert approvals_applied(stack, tenant) == Counter(submitted)
    assert profiles_by_key(stack, tenant) == Counter(keys)
    runs = stack.runs(tenant)
    record(
        "PostgreSQL restart",
        f"10 s down: /healthz 503 {statuses[503]} of {sum(statuses.values())} probes; API back"
        f" {recovered:.0f} s after the stop without restarting; {len(keys)} approvals applied once"
        f" ({retried} client requests retried, {alice.replayed + bob.replayed} answered from"
        f" their key); {len(keys)} profiles saved once;"
        f" runs {Counter(r.status.value for r in runs)}",
    )


def _started_at(stack: Stack, replica: str) -> str:
    return docker("inspect", "-f", "{{.State.StartedAt}}", stack.container(replica)).strip()


def test_one_api_replica_killed_under_load_loses_and_doubles_no_approval(stack):
    """Clients submit and approve with Idempotency-Key, each on its replica; api-1 is killed
    mid-load and its clients retry on api-2: every approval exists once and is applied once."""
    tenant = uuid.uuid4()
    orders_table(stack, "orders_load")
    clients = 4
    per_client = 15
    done: dict[int, list[str]] = {}
    pairs = [
        (
            Client(stack, stack.token(tenant, f"author{n}"), first=f"api-{n % 2 + 1}"),
            Client(stack, stack.token(tenant, f"owner{n}", KERNEL_OWNER), first=f"api-{n % 2 + 1}"),
        )
        for n in range(clients)
    ]

    def steady(n: int) -> None:
        author, owner = pairs[n]
        done[n] = [
            author.submit_and_approve(owner, f"finance.load.c{n}_{i}", "orders_load")
            for i in range(per_client)
        ]

    threads = [threading.Thread(target=steady, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    wait_for(lambda: sum(approvals_applied(stack, tenant).values()) >= 10, 120, "load", every=0.2)
    docker("kill", stack.container("api-1"))
    for thread in threads:
        thread.join(300)
    stack.compose("start", "api-1")
    submitted = [approval for n in range(clients) for approval in done[n]]
    assert len(submitted) == len(set(submitted)) == clients * per_client
    with stack.store.connect() as connection:
        stored = connection.execute(
            sa.select(tables.approvals.c.id, tables.approvals.c.status).where(
                tables.approvals.c.tenant_id == tenant
            )
        ).all()
    assert sorted(str(row.id) for row in stored) == sorted(submitted)  # none lost, none twice
    assert {row.status for row in stored} == {"approved"}
    assert approvals_applied(stack, tenant) == Counter(submitted)  # each applied once
    retried = sum(sum(c.retries.values()) for pair in pairs for c in pair)
    replayed = sum(c.replayed for pair in pairs for c in pair)
    wait_for(lambda: stack.healthz("api-1") == 200, 120, "api-1 back")
    record(
        "API replica killed",
        f"{clients} clients x {per_client} submit+approve; api-1 killed mid-load;"
        f" {retried} requests retried on api-2, {replayed} answered from their key;"
        f" {len(submitted)} approvals, each stored and applied once",
    )


def test_a_binding_approved_in_containers_reaches_the_webservers_asset_graph(stack):
    """The sensor, in the code server's container, asks the webserver's container to reload the
    code location: the new table's asset appears without restarting anything."""
    tenant = uuid.uuid4()
    orders_table(stack, "orders_reload")
    alice = Client(stack, stack.token(tenant, "alice"))
    bob = Client(stack, stack.token(tenant, "bob", KERNEL_OWNER))
    alice.submit_and_approve(bob, "finance.reload.amount", "orders_reload")
    approved = time.monotonic()

    def in_graph() -> bool:
        return any(
            key[-3:] == ["warehouse", "public", "orders_reload"] for key in stack.asset_keys()
        )

    wait_for(in_graph, 180, "the new table's asset in the webserver", every=1)
    record(
        "binding reaches the asset graph",
        f"table asset in the webserver's graph {time.monotonic() - approved:.0f} s after approval",
    )
