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
from mdstudio_core.domain.lineage import CatalogSnapshot, FieldNode, KpiNode, TableNode
from mdstudio_core.domain.model import Tier
from mdstudio_core.service_layer import approvals, lineage
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.cli_helpers import run_cli
from tests.support.factories import (
    KERNEL_OWNER,
    STEWARD,
    changed,
    kpi_request,
    metadata_request,
    person,
    profile_result,
    stored_profile,
    unnamed_label,
)

REVENUE = "finance.revenue.gross_amount"
COST = "finance.cost.cost_amount"
KPI = "finance.kpi.gross_margin"
COST_KPI = "finance.kpi.cost_only"
SETTINGS = Settings()
# Sorts after any other tenant id: the snapshot lists tenants in id order.
LAST_TENANT = uuid.UUID("ffffffff-ffff-4fff-bfff-ffffffffffff")


def approve(engine, tenant, request):
    approval = approvals.submit(
        UnitOfWork(engine), person(tenant, "alice", STEWARD), request, SETTINGS
    )
    bob = person(tenant, "bob", approval.required_role)
    return approvals.approve(UnitOfWork(engine), bob, approval.id, None, SETTINGS)


def add_profile(engine, tenant, key, score, at=None):
    with UnitOfWork(engine) as uow:
        uow.profiles.add(stored_profile(tenant, key, at or dt.datetime.now(dt.UTC), score))
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


def test_the_snapshot_groups_fields_by_table_and_names_tenants(catalog, uow, tenant):
    snapshot = lineage.load_snapshot(uow)
    [table] = snapshot.tables
    assert (table.tenant, table.label) == (unnamed_label(tenant), "warehouse.sales.orders")
    assert [f.canonical_key for f in table.fields] == [COST, REVENUE]
    [kpi] = snapshot.kpis
    assert kpi.inputs == (COST, REVENUE)
    lineage.name_tenant(uow, person(tenant, "root", "tenant_admin"), tenant, "acme")
    renamed = lineage.load_snapshot(uow)
    assert renamed.tenants == {tenant: "acme"} and renamed.kpis[0].tenant == "acme"


def test_lineage_of_a_field_and_of_a_kpi(catalog, uow, tenant):
    reader = person(tenant, "reader")
    assert lineage.lineage(uow, reader, SETTINGS, REVENUE) == {
        "key": REVENUE,
        "entity_type": "GLOBAL_METADATA",
        "table": "warehouse.sales.orders",
        "columns": ["gross_amount"],
        "kpis": [{"key": KPI, "tier": "tier1", "trust_score": 75.0}],
    }
    kpi = lineage.lineage(uow, reader, SETTINGS, KPI)
    assert (kpi["key"], kpi["entity_type"], kpi["trust_score"]) == (KPI, "KPI", 75.0)
    assert kpi["weakest_input"] == COST
    assert [(i["key"], i["quality_score"], i["stale"]) for i in kpi["inputs"]] == [
        (COST, 75.0, False),
        (REVENUE, 90.0, False),
    ]
    assert lineage.kpi_trust(uow, reader, SETTINGS, KPI) == kpi
    assert lineage.impact(uow, reader, SETTINGS, COST) == {
        "key": COST,
        "kpis": [{"key": KPI, "tier": "tier1", "trust_score": 75.0}],
    }


def test_other_tenants_see_nothing(catalog, uow):
    stranger = person(uuid.uuid4(), "eve")
    for query in (lineage.impact, lineage.lineage, lineage.kpi_trust):
        with pytest.raises(NotFound):
            query(uow, stranger, SETTINGS, KPI)


def test_a_stale_input_is_discounted(catalog, uow, tenant):
    approve(catalog, tenant, metadata_request("finance.old"))
    three_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    add_profile(catalog, tenant, "finance.old", 99.0, three_days_ago - dt.timedelta(hours=1))
    add_profile(catalog, tenant, "finance.old", 95.0, three_days_ago)  # the latest
    kpi = kpi_request("finance.kpi.old", tier="tier1")
    kpi["payload"]["depends_on"] = [REVENUE, "finance.old"]
    approve(catalog, tenant, kpi)
    trust = lineage.kpi_trust(uow, person(tenant, "r"), SETTINGS, "finance.kpi.old")
    assert (trust["trust_score"], trust["weakest_input"]) == (76.0, "finance.old")  # 95 x 0.8
    assert {i["key"]: i["stale"] for i in trust["inputs"]} == {"finance.old": True, REVENUE: False}


def test_a_binding_change_recomputes_its_kpis_trust_and_records_impact(catalog, uow, tenant):
    with uow:  # computed when the KPI was approved, before profiles
        assert uow.lineage.trust_states(tenant, [KPI])[KPI].trust_score is None
    unbound = changed(metadata_request(REVENUE), binding=None)
    del unbound["payload"]["binding"]
    approval = approvals.submit(uow, person(tenant, "alice"), unbound, SETTINGS)
    assert approval.required_role == KERNEL_OWNER
    shown = approvals.show_approval(uow, person(tenant, "carol"), approval.id, SETTINGS)
    assert shown["impact"] == [{"key": KPI, "tier": "tier1", "trust_score": 75.0}]
    approvals.approve(uow, person(tenant, "bob", KERNEL_OWNER), approval.id, None, SETTINGS)
    with uow:
        state = uow.lineage.trust_states(tenant, [KPI])[KPI]
    assert (state.trust_score, state.weakest_input) == (None, REVENUE)  # unbound: unscored


def test_deprecating_an_input_of_a_tier1_kpi_needs_the_tier1_role(catalog, uow, tenant):
    """A tier2 field a tier1 KPI depends on: its deprecation is decided as a tier1 change."""
    binding = {"source": "warehouse", "table": "t", "columns": [{"name": "c"}]}
    approve(catalog, tenant, metadata_request("finance.x", tier="tier2", binding=binding))
    kpi = kpi_request("finance.kpi.x", tier="tier1")
    kpi["payload"]["depends_on"] = ["finance.x"]
    approve(catalog, tenant, kpi)
    relabelled = metadata_request("finance.x", tier="tier2", binding=binding, label="X")
    assert (
        approvals.submit(uow, person(tenant, "alice"), relabelled, SETTINGS).required_role
        == STEWARD
    )
    deprecated = metadata_request("finance.x", tier="tier2", binding=binding, status="deprecated")
    approval = approvals.submit(uow, person(tenant, "alice"), deprecated, SETTINGS)
    assert approval.required_role == KERNEL_OWNER
    with pytest.raises(Forbidden):
        approvals.approve(uow, person(tenant, "bob", STEWARD), approval.id, None, SETTINGS)


def test_profiles_landing_record_trust_and_impact_events(engine, uow, tenant):
    from mdstudio_core.service_layer.profiling import save_table

    approve(engine, tenant, metadata_request(REVENUE))
    approve(engine, tenant, metadata_request(COST))
    approve(engine, tenant, kpi_request(tier="tier1"))

    _, kpis = save_table(
        uow,
        SETTINGS,
        tenant,
        [(profile_result(REVENUE, 95.0), Tier.TIER1), (profile_result(COST, 60.0), Tier.TIER1)],
        "run-1",
    )
    assert [(k.canonical_key, k.trust_score, k.weakest_input) for k in kpis] == [(KPI, 60.0, COST)]
    _, kpis = save_table(uow, SETTINGS, tenant, [(profile_result(COST, 85.0), Tier.TIER1)], "run-2")
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


def test_naming_a_tenant(catalog, uow, tenant):
    admin = person(tenant, "root", "tenant_admin")
    with pytest.raises(Forbidden):
        lineage.name_tenant(uow, person(tenant, "x"), tenant, "acme")
    with pytest.raises(InvalidInput):
        lineage.name_tenant(uow, admin, tenant, "not a name")
    assert lineage.name_tenant(uow, admin, tenant, "acme")["name"] == "acme"
    other = uuid.uuid4()
    with pytest.raises(Conflict):
        lineage.name_tenant(uow, person(other, "root", "tenant_admin"), other, "acme")


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


def test_http_lineage_and_trust(catalog, uow, tenant):
    from fastapi.testclient import TestClient

    from mdstudio_core.entrypoints.http import create_app
    from mdstudio_core.service_layer import tokens

    secret, _ = tokens.create_token(uow, person(tenant, "reader"), None)
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(engine=catalog)) as client:
        trust = client.get(f"/kpis/{KPI}/trust", headers=headers)
        assert trust.status_code == 200 and trust.json()["trust_score"] == 75.0
        assert client.get(f"/lineage/{KPI}", headers=headers).json() == trust.json()
        field = client.get(f"/lineage/{REVENUE}", headers=headers).json()
        assert field["kpis"] == [{"key": KPI, "tier": "tier1", "trust_score": 75.0}]
        assert client.get(f"/kpis/{REVENUE}/trust", headers=headers).status_code == 404
        assert client.get("/lineage/finance.nope", headers=headers).status_code == 404


def kpi_on(key, *inputs, tier="tier2"):
    request = kpi_request(key, tier=tier)
    request["payload"]["depends_on"] = list(inputs)
    return request


def rows(*keys, trust=75.0):
    return [
        {"key": k, "tier": "tier1" if k == KPI else "tier2", "trust_score": trust} for k in keys
    ]


@pytest.fixture
def two_tenants(catalog, tenant):
    """The catalog, a tier2 KPI on COST alone, and another tenant with a KPI on its own REVENUE."""
    approve(catalog, tenant, kpi_on(COST_KPI, COST))
    approve(catalog, LAST_TENANT, metadata_request(REVENUE))
    approve(catalog, LAST_TENANT, kpi_on("finance.kpi.elsewhere", REVENUE))
    add_profile(catalog, LAST_TENANT, REVENUE, 10.0)
    return catalog


def test_the_snapshot_holds_every_tenants_tables_fields_and_kpis(catalog, uow, tenant):
    """Tables in (tenant, source, schema, table) order, a missing schema sorting as `None`;
    each field's tier, owner, type and column rules in JSON form (a date bound as text)."""
    alpha = dated_binding("alpha", "zz", "t1")
    approve(
        catalog,
        tenant,
        metadata_request("finance.misc", binding=dated_binding("warehouse", None, "misc")),
    )
    approve(catalog, tenant, metadata_request("finance.zz_a", tier="tier2", binding=alpha))
    approve(catalog, tenant, metadata_request("finance.zz_b", tier="tier2", binding=alpha))
    approve(
        catalog, LAST_TENANT, metadata_request("finance.b", binding=dated_binding("aaa", None, "x"))
    )
    snapshot = lineage.load_snapshot(uow)
    here, there = unnamed_label(tenant), unnamed_label(LAST_TENANT)

    def node(key, column, tier=Tier.TIER1):
        return FieldNode(key, tier, "finance-data", "decimal(18,2)", (column,))

    def rule(name, **bounds):
        return {"name": name, "nullable": False, "unique": False, **bounds}

    dated = rule("d", min="2024-01-01")
    assert snapshot == CatalogSnapshot(
        tenants={tenant: here, LAST_TENANT: there},
        tables=(
            TableNode(
                tenant,
                here,
                "alpha",
                "zz",
                "t1",
                (node("finance.zz_a", dated, Tier.TIER2), node("finance.zz_b", dated, Tier.TIER2)),
            ),
            TableNode(tenant, here, "warehouse", None, "misc", (node("finance.misc", dated),)),
            TableNode(
                tenant,
                here,
                "warehouse",
                "sales",
                "orders",
                (
                    node(COST, rule("cost_amount", min=0)),
                    node(REVENUE, rule("gross_amount", min=0)),
                ),
            ),
            TableNode(LAST_TENANT, there, "aaa", None, "x", (node("finance.b", dated),)),
        ),
        kpis=(
            KpiNode(tenant, here, KPI, "Gross margin", Tier.TIER1, "finance-data", (COST, REVENUE)),
        ),
    )


def dated_binding(source, schema, table):
    """A one-column binding with a date bound."""
    binding = {"source": source, "table": table, "columns": [{"name": "d", "min": "2024-01-01"}]}
    return binding | ({"schema": schema} if schema else {})


def test_lineage_and_impact_show_only_the_tenants_kpis_on_that_key(two_tenants, uow, tenant):
    reader = person(tenant, "reader")
    assert lineage.lineage(uow, reader, SETTINGS, REVENUE)["kpis"] == rows(KPI)
    assert lineage.impact(uow, reader, SETTINGS, COST) == {
        "key": COST,
        "kpis": rows(COST_KPI, KPI),
    }


def test_refreshing_dependents_records_the_tenants_kpis_on_those_fields(two_tenants, uow, tenant):
    with uow:
        on_revenue = lineage.refresh_dependents(uow, SETTINGS, tenant, [REVENUE])
        on_cost = lineage.refresh_dependents(uow, SETTINGS, tenant, [COST])
        uow.commit()
    assert [(t.canonical_key, t.trust_score) for t in on_revenue] == [(KPI, 75.0)]
    assert [(t.canonical_key, t.trust_score) for t in on_cost] == [(COST_KPI, 75.0), (KPI, 75.0)]
    with uow:
        assert uow.lineage.trust_states(tenant, ["finance.kpi.elsewhere"]) == {}


@pytest.mark.parametrize(
    ("fields", "kpis", "expected"),
    [
        ([REVENUE], [], [KPI]),
        ([], [COST_KPI], [COST_KPI]),
        ([REVENUE], [COST_KPI], [COST_KPI, KPI]),
        (["finance.nope"], ["finance.kpi.elsewhere"], []),
    ],
)
def test_current_trust_of_the_chosen_kpis_and_of_those_on_the_chosen_fields(
    two_tenants, uow, tenant, fields, kpis, expected
):
    """What the Dagster sensor shows for changed fields and KPIs (another tenant's never)."""
    trusts = lineage.current_trust(uow, SETTINGS, tenant, fields, kpis)
    assert [(t.canonical_key, t.trust_score) for t in trusts] == [(k, 75.0) for k in expected]


def test_refreshing_kpis_records_the_trust_of_the_active_ones(two_tenants, uow, tenant):
    """What materializing a KPI asset does: deprecated and unknown KPIs are skipped."""
    retired = changed(kpi_on(COST_KPI, COST), status="deprecated")
    approve(two_tenants, tenant, retired)
    with uow:
        before = uow.lineage.trust_states(tenant, [KPI, COST_KPI])
    assert before[KPI].trust_score is None  # computed when approved, before the profiles
    keys = [KPI, COST_KPI, "finance.kpi.nope"]
    trusts = lineage.refresh_kpis(uow, SETTINGS, tenant, keys)
    assert [(t.canonical_key, t.trust_score, t.weakest_input) for t in trusts] == [
        (KPI, 75.0, COST)
    ]
    with uow:
        after = uow.lineage.trust_states(tenant, [KPI, COST_KPI])
    assert after[KPI].trust_score == 75.0
    assert after[COST_KPI] == before[COST_KPI]


def test_tenant_labels_are_names_or_default_labels(catalog, uow, tenant):
    admin = person(tenant, "root", "tenant_admin")
    lineage.name_tenant(uow, admin, tenant, "acme")
    labels = lineage.tenant_labels(uow, [LAST_TENANT, tenant, tenant])
    assert labels == {tenant: "acme", LAST_TENANT: unnamed_label(LAST_TENANT)}


def refusal(error, service, *args):
    """The message `service` is refused with."""
    with pytest.raises(error) as refused:
        service(*args)
    return str(refused.value)


def test_refusals_say_what_is_missing(catalog, uow, tenant):
    reader = person(tenant, "reader")
    unknown = "finance.nope is neither a metadata field nor a KPI of this tenant"
    for query in (lineage.lineage, lineage.impact):
        assert refusal(NotFound, query, uow, reader, SETTINGS, "finance.nope") == (unknown)
    assert refusal(NotFound, lineage.kpi_trust, uow, reader, SETTINGS, REVENUE) == (
        f"KPI {REVENUE} not found"
    )


def test_tenant_naming_refusals_say_why(catalog, uow, tenant):
    admin, rival = (
        person(tenant, "root", "tenant_admin"),
        person(LAST_TENANT, "root", "tenant_admin"),
    )
    name = lineage.name_tenant
    assert refusal(Forbidden, name, uow, person(tenant, "x"), tenant, "acme") == (
        "naming a tenant requires the tenant_admin role"
    )
    assert refusal(NotFound, name, uow, admin, LAST_TENANT, "acme") == (
        f"tenant {LAST_TENANT} not found"
    )
    name(uow, admin, tenant, "acme")
    assert refusal(Conflict, name, uow, rival, LAST_TENANT, "acme") == (
        "the name acme is taken by another tenant"
    )


def test_an_unbound_field_has_no_table_and_changing_it_breaks_nothing(catalog, uow, tenant):
    """A tier1 KPI on a field that was never bound: the field's lineage shows no table, and a
    change to it is not a binding change, so it stays the field's own tier's decision."""
    approve(catalog, tenant, metadata_request("finance.loose", tier="tier2", binding=None))
    approve(catalog, tenant, kpi_on("finance.kpi.loose", "finance.loose", tier="tier1"))
    shown = lineage.lineage(uow, person(tenant, "r"), SETTINGS, "finance.loose")
    assert shown == {
        "key": "finance.loose",
        "entity_type": "GLOBAL_METADATA",
        "table": None,
        "columns": [],
        "kpis": [{"key": "finance.kpi.loose", "tier": "tier1", "trust_score": None}],
    }
    relabelled = metadata_request("finance.loose", tier="tier2", binding=None, label="Loose")
    submitted = approvals.submit(uow, person(tenant, "alice"), relabelled, SETTINGS)
    assert submitted.required_role == STEWARD


def test_a_name_taken_between_the_check_and_the_write_is_a_conflict(catalog, uow, tenant):
    """Another tenant names itself the same right after the check: the unique constraint
    refuses the write, reported as the same conflict."""
    rival = uuid.uuid4()
    taken = []

    def rival_takes_the_name(conn, cursor, statement, parameters, context, executemany):
        if not taken and statement.startswith("SELECT") and "FROM mdm_tenant" in statement:
            taken.append(rival)
            now = dt.datetime.now(dt.UTC)
            conn.execute(
                sa.insert(tables.tenants).values(
                    tenant_id=rival, name="acme", updated_at=now, updated_by="rival"
                )
            )

    admin = person(tenant, "root", "tenant_admin")
    sa.event.listen(catalog, "after_cursor_execute", rival_takes_the_name)
    try:
        message = refusal(Conflict, lineage.name_tenant, uow, admin, tenant, "acme")
    finally:
        sa.event.remove(catalog, "after_cursor_execute", rival_takes_the_name)
    assert taken == [rival]
    assert message == "the name acme is taken by another tenant"


def test_unbinding_an_input_of_a_tier1_kpi_needs_the_tier1_role_in_that_tenant_only(
    catalog, uow, tenant
):
    """The same tier2 field in two tenants, a tier1 KPI on it in one: unbinding it there is a
    tier1 change, in the other tenant the field's own tier decides."""
    binding = {"source": "warehouse", "table": "t", "columns": [{"name": "c"}]}
    for owner in (tenant, LAST_TENANT):
        approve(catalog, owner, metadata_request("finance.x", tier="tier2", binding=binding))
    approve(catalog, tenant, kpi_on("finance.kpi.x", "finance.x", tier="tier1"))
    unbound = metadata_request("finance.x", tier="tier2", binding=None)
    roles = [
        approvals.submit(uow, person(owner, "alice"), unbound, SETTINGS).required_role
        for owner in (tenant, LAST_TENANT)
    ]
    assert roles == [KERNEL_OWNER, STEWARD]
