"""Lineage on the store (SQLite and PostgreSQL): the snapshot the code location builds from, trust
recorded with profiles and binding changes, impact queries from the CLI and the HTTP API, the
approval's `impact` and the tier1 role for breaking a tier1 KPI's input, tenant names."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from mdstudio_core.domain.model import Tier, entity_urn
from mdstudio_core.domain.quality import StoredProfile
from mdstudio_core.service_layer import approvals, lineage
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.cli_helpers import run_cli
from tests.factories import KERNEL_OWNER, STEWARD, changed, kpi_request, metadata_request, person

REVENUE = "finance.revenue.gross_amount"
COST = "finance.cost.cost_amount"
KPI = "finance.kpi.gross_margin"
SETTINGS = Settings()


def approve(engine, tenant, request):
    approval = approvals.submit(UnitOfWork(engine), person(tenant, "alice", STEWARD), request)
    bob = person(tenant, "bob", approval.required_role)
    return approvals.approve(UnitOfWork(engine), bob, approval.id, None, SETTINGS)


def add_profile(engine, tenant, key, score, at=None):
    with UnitOfWork(engine) as uow:
        uow.profiles.add(
            StoredProfile(
                id=uuid.uuid4(),
                tenant_id=tenant,
                entity_urn=entity_urn(tenant, key),
                canonical_key=key,
                quality_score=score,
                completeness=None,
                uniqueness=None,
                validity=None,
                row_count=1,
                columns=[],
                score_note=None,
                details={},
                trigger="manual",
                approval_id=None,
                run_id=None,
                sql=None,
                sample=None,
                duration_ms=1,
                created_at=at or dt.datetime.now(dt.UTC),
            )
        )
        uow.commit()


@pytest.fixture
def catalog(engine, tenant):
    """Two bound tier1 fields on one table, a tier1 KPI on both, profiled 90 and 75."""
    cost_binding = {
        "source": "warehouse",
        "schema": "sales",
        "table": "orders",
        "columns": [{"name": "cost_amount", "min": 0}],
    }
    approve(engine, tenant, metadata_request(REVENUE))
    approve(engine, tenant, metadata_request(COST, binding=cost_binding))
    approve(engine, tenant, kpi_request(tier="tier1"))
    add_profile(engine, tenant, REVENUE, 90.0)
    add_profile(engine, tenant, COST, 75.0)
    return engine


def test_the_snapshot_groups_fields_by_table_and_names_tenants(catalog, tenant):
    snapshot = lineage.load_snapshot(UnitOfWork(catalog))
    [table] = snapshot.tables
    assert (table.tenant, table.label) == (f"t_{tenant.hex[:8]}", "warehouse.sales.orders")
    assert [f.canonical_key for f in table.fields] == [COST, REVENUE]
    [kpi] = snapshot.kpis
    assert kpi.inputs == (COST, REVENUE)
    lineage.name_tenant(UnitOfWork(catalog), person(tenant, "root", "tenant_admin"), tenant, "acme")
    renamed = lineage.load_snapshot(UnitOfWork(catalog))
    assert renamed.tenants == {tenant: "acme"} and renamed.kpis[0].tenant == "acme"


def test_lineage_of_a_field_and_of_a_kpi(catalog, tenant):
    reader = person(tenant, "reader")
    assert lineage.lineage(UnitOfWork(catalog), reader, SETTINGS, REVENUE) == {
        "key": REVENUE,
        "entity_type": "GLOBAL_METADATA",
        "table": "warehouse.sales.orders",
        "columns": ["gross_amount"],
        "kpis": [{"key": KPI, "tier": "tier1", "trust_score": 75.0}],
    }
    kpi = lineage.lineage(UnitOfWork(catalog), reader, SETTINGS, KPI)
    assert (kpi["key"], kpi["entity_type"], kpi["trust_score"]) == (KPI, "KPI", 75.0)
    assert kpi["weakest_input"] == COST
    assert [(i["key"], i["quality_score"], i["stale"]) for i in kpi["inputs"]] == [
        (COST, 75.0, False),
        (REVENUE, 90.0, False),
    ]
    assert lineage.kpi_trust(UnitOfWork(catalog), reader, SETTINGS, KPI) == kpi
    assert lineage.impact(UnitOfWork(catalog), reader, SETTINGS, COST) == {
        "key": COST,
        "kpis": [{"key": KPI, "tier": "tier1", "trust_score": 75.0}],
    }


def test_other_tenants_see_nothing(catalog):
    stranger = person(uuid.uuid4(), "eve")
    for query in (lineage.impact, lineage.lineage, lineage.kpi_trust):
        with pytest.raises(NotFound):
            query(UnitOfWork(catalog), stranger, SETTINGS, KPI)


def test_a_stale_input_is_discounted(catalog, tenant):
    approve(catalog, tenant, metadata_request("finance.old"))
    three_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    add_profile(catalog, tenant, "finance.old", 99.0, three_days_ago - dt.timedelta(hours=1))
    add_profile(catalog, tenant, "finance.old", 95.0, three_days_ago)  # the latest
    kpi = kpi_request("finance.kpi.old", tier="tier1")
    kpi["payload"]["depends_on"] = [REVENUE, "finance.old"]
    approve(catalog, tenant, kpi)
    trust = lineage.kpi_trust(UnitOfWork(catalog), person(tenant, "r"), SETTINGS, "finance.kpi.old")
    assert (trust["trust_score"], trust["weakest_input"]) == (76.0, "finance.old")  # 95 x 0.8
    assert {i["key"]: i["stale"] for i in trust["inputs"]} == {"finance.old": True, REVENUE: False}


def test_a_binding_change_recomputes_its_kpis_trust_and_records_impact(catalog, tenant):
    with UnitOfWork(catalog) as uow:  # computed when the KPI was approved, before profiles
        assert uow.lineage.trust_states(tenant, [KPI])[KPI].trust_score is None
    unbound = changed(metadata_request(REVENUE), binding=None)
    del unbound["payload"]["binding"]
    approval = approvals.submit(UnitOfWork(catalog), person(tenant, "alice"), unbound)
    assert approval.required_role == KERNEL_OWNER
    shown = approvals.show_approval(
        UnitOfWork(catalog), person(tenant, "carol"), approval.id, SETTINGS
    )
    assert shown["impact"] == [{"key": KPI, "tier": "tier1", "trust_score": 75.0}]
    approvals.approve(
        UnitOfWork(catalog), person(tenant, "bob", KERNEL_OWNER), approval.id, None, SETTINGS
    )
    with UnitOfWork(catalog) as uow:
        state = uow.lineage.trust_states(tenant, [KPI])[KPI]
    assert (state.trust_score, state.weakest_input) == (None, REVENUE)  # unbound: unscored


def test_deprecating_an_input_of_a_tier1_kpi_needs_the_tier1_role(catalog, tenant):
    """A tier2 field a tier1 KPI depends on: its deprecation is decided as a tier1 change."""
    binding = {"source": "warehouse", "table": "t", "columns": [{"name": "c"}]}
    approve(catalog, tenant, metadata_request("finance.x", tier="tier2", binding=binding))
    kpi = kpi_request("finance.kpi.x", tier="tier1")
    kpi["payload"]["depends_on"] = ["finance.x"]
    approve(catalog, tenant, kpi)
    relabelled = metadata_request("finance.x", tier="tier2", binding=binding, label="X")
    assert (
        approvals.submit(UnitOfWork(catalog), person(tenant, "alice"), relabelled).required_role
        == STEWARD
    )
    deprecated = metadata_request("finance.x", tier="tier2", binding=binding, status="deprecated")
    approval = approvals.submit(UnitOfWork(catalog), person(tenant, "alice"), deprecated)
    assert approval.required_role == KERNEL_OWNER
    with pytest.raises(Forbidden):
        approvals.approve(UnitOfWork(catalog), person(tenant, "bob", STEWARD), approval.id)


def test_profiles_landing_record_trust_and_impact_events(engine, tenant):
    from mdstudio_core.domain.model import Trigger
    from mdstudio_core.domain.quality import ProfileResult
    from mdstudio_core.service_layer.profiling import save_table

    approve(engine, tenant, metadata_request(REVENUE))
    approve(engine, tenant, metadata_request(COST))
    approve(engine, tenant, kpi_request(tier="tier1"))

    def result(key, score):
        return ProfileResult(
            canonical_key=key,
            source="warehouse",
            table="sales.orders",
            quality_score=score,
            completeness=None,
            uniqueness=None,
            validity=None,
            duration_ms=1,
            row_count=1,
            columns=[],
            trigger=Trigger.SCHEDULE,
            sql="",
            profiled_at=dt.datetime.now(dt.UTC),
        )

    _, kpis = save_table(
        UnitOfWork(engine),
        SETTINGS,
        tenant,
        [(result(REVENUE, 95.0), Tier.TIER1), (result(COST, 60.0), Tier.TIER1)],
        "run-1",
    )
    assert [(k.canonical_key, k.trust_score, k.weakest_input) for k in kpis] == [(KPI, 60.0, COST)]
    _, kpis = save_table(
        UnitOfWork(engine), SETTINGS, tenant, [(result(COST, 85.0), Tier.TIER1)], "run-2"
    )
    assert kpis[0].trust_score == 85.0
    with engine.connect() as connection:
        events = connection.execute(
            sa.select(tables.events.c.type, tables.events.c.payload)
            .where(tables.events.c.type.like("kpi.quality.%"))
            .order_by(tables.events.c.id)
        ).all()
    assert [(t, p["trust_score"]) for t, p in events] == [
        ("kpi.quality.impacted", 60.0),
        ("kpi.quality.recovered", 85.0),
    ]


def test_naming_a_tenant(catalog, tenant):
    admin = person(tenant, "root", "tenant_admin")
    with pytest.raises(Forbidden):
        lineage.name_tenant(UnitOfWork(catalog), person(tenant, "x"), tenant, "acme")
    with pytest.raises(InvalidInput):
        lineage.name_tenant(UnitOfWork(catalog), admin, tenant, "not a name")
    assert lineage.name_tenant(UnitOfWork(catalog), admin, tenant, "acme")["name"] == "acme"
    other = uuid.uuid4()
    with pytest.raises(Conflict):
        lineage.name_tenant(
            UnitOfWork(catalog), person(other, "root", "tenant_admin"), other, "acme"
        )


def test_cli_lineage_impact_and_tenant_names(catalog, tenant, store_url, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    who = ["--tenant", str(tenant), "--user", "reader"]
    result = run_cli(["lineage", KPI, "--json", *who])
    assert result.exit_code == 0, result.stderr
    assert set(result.json) >= {"key", "entity_type", "trust_score", "weakest_input", "inputs"}
    assert set(result.json["inputs"][0]) == {"key", "tier", "quality_score", "profiled_at", "stale"}
    field = run_cli(["lineage", REVENUE, "--json", *who]).json
    assert set(field) == {"key", "entity_type", "table", "columns", "kpis"}
    assert run_cli(["impact", COST, "--json", *who]).json["kpis"][0]["key"] == KPI
    assert "75.0" in run_cli(["impact", COST, *who]).stdout
    assert run_cli(["lineage", "finance.nope", *who]).exit_code == 4
    name = ["tenants", "name", str(tenant)]
    assert run_cli([*name, "acme", *who]).exit_code == 3
    assert run_cli([*name, "9bad", *who, "--role", "tenant_admin"]).exit_code == 2
    named = run_cli([*name, "acme", "--json", *who, "--role", "tenant_admin"])
    assert named.exit_code == 0 and named.json == {"tenant_id": str(tenant), "name": "acme"}
    assert run_cli(["tenants", "name", "nope", "acme", *who]).exit_code == 2


def test_http_lineage_and_trust(catalog, tenant):
    from fastapi.testclient import TestClient

    from mdstudio_core.entrypoints.http import create_app
    from mdstudio_core.service_layer import tokens

    secret, _ = tokens.create_token(UnitOfWork(catalog), person(tenant, "reader"), None)
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(engine=catalog)) as client:
        trust = client.get(f"/kpis/{KPI}/trust", headers=headers)
        assert trust.status_code == 200 and trust.json()["trust_score"] == 75.0
        assert client.get(f"/lineage/{KPI}", headers=headers).json() == trust.json()
        field = client.get(f"/lineage/{REVENUE}", headers=headers).json()
        assert field["kpis"] == [{"key": KPI, "tier": "tier1", "trust_score": 75.0}]
        assert client.get(f"/kpis/{REVENUE}/trust", headers=headers).status_code == 404
        assert client.get("/lineage/finance.nope", headers=headers).status_code == 404
