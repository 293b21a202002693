"""Evidence only for those who may decide, and never at the cost of everyone else (issue 18,
item 4): who may preview (service and CLI, both backends), the preview timeout on a locked
PostgreSQL table, and a served app where ten previews of a locked table leave another
tenant's reads answering at once."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from demo import warehouse as demo_warehouse
from mdstudio_core.adapters.warehouse import UnknownSource
from mdstudio_core.config import Settings
from mdstudio_core.domain.errors import Forbidden
from mdstudio_core.service_layer import approvals, profiling, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.console.conftest import csrf_of, error_of
from tests.http.test_metrics import serve, stop
from tests.store.test_decision_roles import pending_deprecation
from tests.support.cli_helpers import run_cli
from tests.support.factories import (
    DEMO_BINDING,
    KERNEL_OWNER,
    SETTINGS,
    STEWARD,
    approve_metadata,
    metadata_request,
    person,
    store_snapshot,
)
from tests.support.held_locks import released_after

KEY = "finance.revenue.gross_amount"
# The attack: bindings with rules on a column, previewed until they give its maximum.
PROBE = {
    "source": "demo",
    "table": "orders",
    "columns": [{"name": "gross_amount", "min": 0, "max": 100}],
}
READER = "reader"


@pytest.fixture
def demo_settings(tmp_path: Path) -> Settings:
    return Settings(sources={"DEMO": demo_warehouse.build(tmp_path / "wh.db")})


def _preview_approval(engine, settings, who, approval_id) -> profiling.Preview:
    return profiling.preview_approval(UnitOfWork(engine), settings, who, approval_id)


def test_a_requests_preview_is_for_its_required_role_and_tenant_admins(
    engine, uow, tenant, demo_settings
):
    rita = person(tenant, "rita", READER)
    tier2 = approvals.submit(
        uow, rita, metadata_request(KEY, tier="tier2", binding=PROBE), SETTINGS
    )
    tier1 = approvals.submit(uow, rita, metadata_request(binding=DEMO_BINDING), SETTINGS)
    before = store_snapshot(engine)
    for who, approval, role in (
        (rita, tier2, STEWARD),  # her own request: submitting it is not deciding it
        (person(tenant, "nobody"), tier2, STEWARD),
        (person(tenant, "sam", STEWARD), tier1, KERNEL_OWNER),
    ):
        with pytest.raises(Forbidden, match=f"role {role} \\(or tenant_admin\\) is required"):
            _preview_approval(engine, demo_settings, who, approval.id)
    assert store_snapshot(engine) == before
    for who, approval in (
        (person(tenant, "sam", STEWARD), tier2),
        (person(tenant, "kim", KERNEL_OWNER), tier1),
        (person(tenant, "root", "tenant_admin"), tier1),
    ):
        preview = _preview_approval(engine, demo_settings, who, approval.id)
        assert preview.result.row_count == 20


def test_the_role_is_checked_before_the_warehouse_is_asked(engine, uow, tenant):
    """A request bound to a source that is not configured: the refusal, not the source's
    error, is what the caller learns."""
    pending = approvals.submit(uow, person(tenant, "alice"), metadata_request(), SETTINGS)
    with pytest.raises(Forbidden):
        _preview_approval(engine, SETTINGS, person(tenant, "rita", READER), pending.id)
    with pytest.raises(UnknownSource):
        _preview_approval(engine, SETTINGS, person(tenant, "kim", KERNEL_OWNER), pending.id)


def test_a_preview_follows_the_role_judged_against_the_live_state(engine, tenant):
    """The deprecation of a field a tier1 KPI came to depend on is the kernel owner's to
    decide, so its evidence is the kernel owner's too."""
    deprecation = pending_deprecation(engine, tenant)
    with pytest.raises(Forbidden, match="role kernel_owner"):
        _preview_approval(engine, SETTINGS, person(tenant, "bob", STEWARD), deprecation.id)


def test_a_live_entitys_preview_needs_a_workflow_role(engine, uow, tenant, demo_settings):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    for roles in ((READER,), ()):
        with pytest.raises(Forbidden, match="requires one of the roles"):
            profiling.preview_entity(uow, demo_settings, person(tenant, "rita", *roles), KEY)
    for role in (STEWARD, KERNEL_OWNER, "tenant_admin"):
        who = person(tenant, "w", role)
        preview = profiling.preview_entity(uow, demo_settings, who, KEY)
        assert preview.result.quality_score == 91.89


def test_the_cli_refuses_a_preview_with_exit_3(
    store_url, engine, uow, tenant, monkeypatch, tmp_path
):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", str(tenant))
    monkeypatch.setenv("MDSTUDIO_SOURCE_DEMO_URL", demo_warehouse.build(tmp_path / "wh.db"))
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    rita = person(tenant, "rita", READER)
    probe = approvals.submit(
        uow,
        rita,
        metadata_request("hr.salary.probe", tier="tier2", binding=PROBE),
        SETTINGS,
    )
    as_rita = ("--user", "rita", "--role", READER)
    refused = run_cli(["profiles", "preview", "--approval", str(probe.id), *as_rita])
    assert refused.exit_code == 3
    assert "role metadata_steward (or tenant_admin) is required" in refused.stderr
    refused = run_cli(["profiles", "preview", KEY, *as_rita])
    assert refused.exit_code == 3
    assert "kernel_owner, metadata_steward, tenant_admin" in refused.stderr
    allowed = run_cli(["profiles", "preview", KEY, "--user", "sam", "--role", STEWARD, "--json"])
    assert allowed.exit_code == 0, allowed.stderr
    assert allowed.json["quality_score"] == 91.89


# -- a table someone holds a lock on (PostgreSQL) ------------------------------------------------

# Past this the lock is released whatever happens, so an unbounded preview ends late instead
# of hanging the test.
RELEASED_AFTER_S = 20.0
LOCKED_BINDING = {"source": "wh", "table": "salaries", "columns": [{"name": "amount", "min": 0}]}


@pytest.fixture
def locked_table(postgres_server) -> Iterator[tuple[str, Callable[[], None]]]:
    """A PostgreSQL warehouse whose `salaries` table another transaction holds `ACCESS
    EXCLUSIVE`; yields the warehouse's URL and what releases the lock."""
    url = postgres_server.create_database("mdstudio_wh")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE salaries (id int PRIMARY KEY, amount int)")
        connection.exec_driver_sql(
            "INSERT INTO salaries SELECT g, g * 1000 FROM generate_series(1, 50) g"
        )
    holder = engine.connect()
    transaction = holder.begin()
    holder.exec_driver_sql("LOCK TABLE salaries IN ACCESS EXCLUSIVE MODE")
    with released_after(transaction, RELEASED_AFTER_S) as release:
        yield url, release
    holder.close()
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_preview_ends_within_the_preview_timeout_whatever_the_tiers(
    locked_table, store_url, uow, tenant, monkeypatch
):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", locked_table[0])
    monkeypatch.setenv("MDSTUDIO_TIER1_TIMEOUT_SECONDS", "600")
    monkeypatch.setenv("MDSTUDIO_PREVIEW_TIMEOUT_SECONDS", "1")
    pending = approvals.submit(
        uow,
        person(tenant, "alice"),
        metadata_request(binding=LOCKED_BINDING),
        SETTINGS,
    )
    identity = ("--tenant", str(tenant), "--user", "kim", "--role", KERNEL_OWNER)
    started = time.monotonic()
    result = run_cli(["profiles", "preview", "--approval", str(pending.id), *identity])
    assert time.monotonic() - started < 5
    assert result.exit_code == 1
    assert "MDSTUDIO_PREVIEW_TIMEOUT_SECONDS" in result.stderr


PREVIEW_TIMEOUT_S = 4
RETRY_AFTER = re.compile(r"^[1-9][0-9]*$")


class ConsoleUser:
    """A signed-in console session over real HTTP: its cookies and the forms' CSRF token."""

    def __init__(self, base: str, secret: str) -> None:
        with httpx.Client(base_url=base) as client:
            login = client.get("/ui/login")
            signed_in = client.post(
                "/ui/login", data={"token": secret, "csrf_token": csrf_of(login.text)}
            )
            assert signed_in.status_code == 303
            self.csrf = csrf_of(client.get("/ui/").text)
            self.cookies = dict(client.cookies)
        self.base = base

    def evidence(self, approval_id: uuid.UUID) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        with httpx.Client(base_url=self.base, cookies=self.cookies, timeout=60) as client:
            response = client.post(
                f"/ui/approvals/{approval_id}/evidence", data={"csrf_token": self.csrf}
            )
        return response, time.monotonic() - started


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_ten_previews_of_a_locked_table_leave_another_tenants_reads_at_once(
    locked_table, store_url, engine
):
    warehouse_url, release_lock = locked_table
    acme, globex = uuid.uuid4(), uuid.uuid4()
    pending = approvals.submit(
        UnitOfWork(engine),
        person(acme, "alice"),
        metadata_request(binding=LOCKED_BINDING),
        SETTINGS,
    )
    approve_metadata(engine, globex, key=KEY, tier="tier2", binding=None)
    kim, _ = tokens.create_token(UnitOfWork(engine), person(acme, "kim", KERNEL_OWNER))
    reader, _ = tokens.create_token(UnitOfWork(engine), person(globex, "rita", READER))
    server, base = serve(
        store_url,
        MDSTUDIO_SOURCE_WH_URL=warehouse_url,
        MDSTUDIO_PREVIEW_TIMEOUT_SECONDS=str(PREVIEW_TIMEOUT_S),
    )
    try:
        owner = ConsoleUser(base, kim)
        latencies: list[float] = []
        previewing = threading.Event()
        previewing.set()

        def read_metadata() -> None:
            with httpx.Client(base_url=base, timeout=30) as client:
                while previewing.is_set():
                    started = time.monotonic()
                    response = client.get(
                        "/metadata", headers={"Authorization": f"Bearer {reader}"}
                    )
                    latencies.append(time.monotonic() - started)
                    assert [m["canonical_key"] for m in response.json()["items"]] == [KEY]
                    time.sleep(0.05)

        reads = threading.Thread(target=read_metadata)
        reads.start()
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(lambda _: owner.evidence(pending.id), range(10)))
        previewing.clear()
        reads.join()
        release_lock()
        after, _ = owner.evidence(pending.id)  # the slots came back
    finally:
        stop(server)

    ran = [(r, s) for r, s in answers if r.status_code == 200]
    busy = [(r, s) for r, s in answers if r.status_code == 429]
    assert (len(ran), len(busy)) == (2, 8)  # MDSTUDIO_PREVIEW_CONCURRENCY's default
    for response, seconds in ran:
        assert "MDSTUDIO_PREVIEW_TIMEOUT_SECONDS" in error_of(response.text)
        assert PREVIEW_TIMEOUT_S - 0.5 < seconds < PREVIEW_TIMEOUT_S + 5
    for response, seconds in busy:
        assert RETRY_AFTER.match(response.headers["Retry-After"])
        assert int(response.headers["Retry-After"]) <= PREVIEW_TIMEOUT_S
        assert "MDSTUDIO_PREVIEW_CONCURRENCY" in error_of(response.text)
        assert seconds < PREVIEW_TIMEOUT_S / 2  # at once: never waiting for a slot
    assert len(latencies) >= 10  # reads ran all along the previews
    assert max(latencies) < 1, sorted(latencies)[-5:]
    assert after.status_code == 200
    assert 'data-testid="evidence-score">0<' not in after.text
    assert 'data-testid="evidence-score">' in after.text
