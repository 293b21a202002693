"""The catalog as Dagster's asset graph, in process on a real (temporary) instance: table and KPI
assets built from the store, profiling runs that materialize the tables they select and the
KPIs depending on them, the KPI check, the impact events, a UI-style "Materialize" of one table.
The daemon and the webserver end to end are in test_lineage_e2e.py."""

import uuid

import dagster as dg
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain.lineage import tenant_label
from mdstudio_core.domain.model import EntityType, Tier
from mdstudio_core.service_layer import approvals, lineage, profile_requests
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from mdstudio_pipelines.lib.asset_keys import KPI_CHECK
from mdstudio_pipelines.lib.dagster_internals import check_evaluations
from tests.pipelines.conftest import Env, load_defs
from tests.support.factories import (
    SETTINGS,
    add_entity,
    demo_binding,
    kpi_request,
    person,
    unnamed_label,
)

REVENUE = "finance.revenue.gross_amount"
COST = "finance.cost.cost_amount"
KPI = "finance.kpi.gross_margin"


def warehouse_sql(statement: str) -> None:
    warehouse = sa.create_engine(Settings.from_env().source_url("demo") or "")
    with warehouse.begin() as connection:
        connection.exec_driver_sql(statement)
    warehouse.dispose()


def approve_kpi(env: Env, tier: str = "tier1"):
    request = kpi_request(tier=tier)
    approval = approvals.submit(
        UnitOfWork(env.engine), person(env.tenant, "alice"), request, SETTINGS
    )
    bob = person(env.tenant, "bob", approval.required_role)
    return approvals.approve(UnitOfWork(env.engine), bob, approval.id, None, SETTINGS)


def scores(env: Env) -> dict[str, float]:
    with env.engine.connect() as connection:
        rows = connection.execute(
            sa.select(tables.profiles.c.canonical_key, tables.profiles.c.quality_score).order_by(
                tables.profiles.c.created_at
            )
        ).all()
    return {key: score for key, score in rows}  # the latest of each


def kpi_materializations(env: Env, key: dg.AssetKey) -> list[dict]:
    records = env.instance.fetch_materializations(key, limit=20, ascending=True).records
    return [
        {k: getattr(v, "value", v) for k, v in r.asset_materialization.metadata.items()}
        for r in records
    ]


def check_results(env: Env, key: dg.AssetKey) -> list:
    history = check_evaluations(env.instance, dg.AssetCheckKey(key, KPI_CHECK), None, 20)
    return [h.event.dagster_event.asset_check_evaluation_data for h in reversed(history)]


def test_tables_and_kpis_are_assets_and_profiles_materialize_both(env):
    warehouse_sql("CREATE TABLE costs AS SELECT * FROM orders")
    env.approve(REVENUE, binding=demo_binding("orders", [{"name": "gross_amount", "min": 0}]))
    currencies = {"name": "currency", "allowed_values": ["EUR", "USD", "GBP"]}
    env.approve(COST, binding=demo_binding("costs", [currencies]))
    approve_kpi(env)
    tenant = tenant_label(env.tenant, None)
    orders = dg.AssetKey([tenant, "demo", "main", "orders"])
    costs = dg.AssetKey([tenant, "demo", "main", "costs"])
    kpi = dg.AssetKey([tenant, "kpi", KPI])

    specs = {spec.key: spec for spec in load_defs().resolve_all_asset_specs()}
    assert {dep.asset_key for dep in specs[kpi].deps} == {orders, costs}
    assert specs[orders].metadata["mdstudio/tenant"] == str(env.tenant)
    assert specs[orders].metadata["mdstudio/table"] == "demo.orders"
    assert specs[orders].kinds == {"table", "sqlite"}
    assert specs[orders].tags["mdstudio/tier"] == "tier1"
    assert specs[orders].group_name == tenant
    [column] = specs[orders].metadata["dagster/column_schema"].columns
    assert column.name == "gross_amount" and column.tags["mdstudio/canonical_key"] == REVENUE
    assert specs[kpi].metadata["mdstudio/canonical_key"] == KPI
    assert specs[kpi].kinds == {"kpi"}
    lineage_deps = specs[kpi].metadata["dagster/column_lineage"].deps_by_column[KPI]
    assert {(d.asset_key, d.column_name) for d in lineage_deps} == {
        (orders, "gross_amount"),
        (costs, "currency"),
    }

    [request] = env.tick().run_requests  # both tables, one run (same source)
    assert set(request.asset_selection) == {orders, costs}
    assert env.run(request).success
    latest = scores(env)
    [table] = kpi_materializations(env, orders)
    assert table["quality_score"] == latest[REVENUE]
    approved, materialized = kpi_materializations(env, kpi)
    assert approved["trust_score"] is None  # reported by the tick: inputs never profiled yet
    assert approved["unscored_inputs"] == f"{COST} (never profiled), {REVENUE} (never profiled)"
    assert materialized["trust_score"] == min(latest[REVENUE], latest[COST])
    assert materialized["weakest_input"] == min((latest[k], k) for k in (REVENUE, COST))[1]
    assert materialized["trust_score"] == 86.39  # gross_amount's; currency scores 91.43
    unscored, check = check_results(env, kpi)
    assert (unscored.passed, check.passed) == (False, True)
    assert check.severity == dg.AssetCheckSeverity.ERROR  # a tier1 KPI

    # Degrade one input's data and profile it again: a lower trust, a failing check, impacted.
    warehouse_sql("UPDATE costs SET currency = 'XXX'")
    profile_requests.request_profile(
        UnitOfWork(env.engine), person(env.tenant, "carol"), COST, force=True
    )
    [request] = env.tick().run_requests
    assert request.asset_selection == [costs]
    assert env.run(request).success
    first, second = kpi_materializations(env, kpi)[-2:]
    assert second["trust_score"] < first["trust_score"]
    assert second["weakest_input"] == COST
    assert check_results(env, kpi)[-1].passed is False
    with env.engine.connect() as connection:
        impacted = connection.execute(
            sa.select(tables.events.c.payload).where(tables.events.c.type == "kpi.quality.impacted")
        ).scalar_one()
    assert impacted == {
        "canonical_key": KPI,
        "trust_score": second["trust_score"],
        "weakest_input": COST,
        "threshold": 80.0,
    }


def test_a_kpi_approved_on_unprofiled_inputs_asks_for_their_profiles(env):
    """Cascade: a KPI whose inputs are new asks for a profile of each bound input that has
    none within the rerun interval (KPI_DEPENDENCY); unbound ones are NO_BINDING skips."""
    env.approve(REVENUE, tier="tier3")  # bound, never profiled (tier3 has no schedule)
    env.tick()
    approval = approve_kpi(env, tier="tier2")
    [request] = env.tick().run_requests
    assert request.tags["mdstudio/reason"] == "KPI_DEPENDENCY"
    assert request.tags["mdstudio/approval_id"] == str(approval.id)
    config = request.run_config["ops"]["profile_tables"]["config"]
    assert [t["canonical_keys"] for t in config["tables"]] == [[REVENUE]]
    skips = env.skips(dg.AssetKey("entity_profile"), COST)
    assert [s["reason"] for s in skips] == ["NO_BINDING"]
    assert env.run(request).success
    reader = person(env.tenant, "x")
    trust = lineage.kpi_trust(UnitOfWork(env.engine), reader, Settings.from_env(), KPI)
    assert trust["trust_score"] is None  # COST does not exist
    assert trust["unscored_inputs"] == [{"key": COST, "reason": "not found"}]


def test_materializing_a_table_from_the_ui_profiles_every_field_bound_to_it(env):
    env.approve(REVENUE, binding=demo_binding("orders", [{"name": "gross_amount", "min": 0}]))
    env.approve("finance.revenue.currency", binding=demo_binding("orders", [{"name": "currency"}]))
    defs = load_defs()
    orders = dg.AssetKey([tenant_label(env.tenant, None), "demo", "main", "orders"])
    job = defs.resolve_job_def("profile_tables_job")
    result = job.execute_in_process(instance=env.instance, asset_selection=[orders])
    assert result.success
    assert set(scores(env)) == {REVENUE, "finance.revenue.currency"}
    assert len(kpi_materializations(env, orders)) == 1


def test_unbinding_an_input_reports_its_kpis_new_trust(env):
    env.approve(REVENUE, binding=demo_binding("orders", [{"name": "gross_amount", "min": 0}]))
    env.approve(COST, binding=demo_binding("orders", [{"name": "currency"}]))
    approve_kpi(env)
    [request] = env.tick().run_requests
    assert env.run(request).success
    kpi = dg.AssetKey([tenant_label(env.tenant, None), "kpi", KPI])
    assert kpi_materializations(env, kpi)[-1]["trust_score"] is not None
    env.approve(REVENUE, binding=None)  # unbound: the KPI cannot be trusted any more
    assert env.tick().run_requests == []
    latest = kpi_materializations(env, kpi)[-1]
    assert latest["trust_score"] is None
    assert latest["unscored_inputs"] == f"{REVENUE} (unbound (or deprecated))"
    assert check_results(env, kpi)[-1].passed is False


# Tenant ids that differ from the first in one hex digit each, at every position: any label
# that keeps less than the whole id gives two of them the same label. The first two share their
# leading 8 digits (the rule before issue 18 named both `t_0190a1b2`) and their last group.
BASE = "0190a1b2000070008000000000000a11"
CLOSE_IDS = [uuid.UUID(BASE)] + [
    uuid.UUID(BASE[:i] + format((int(BASE[i], 16) + 1) % 16, "x") + BASE[i + 1 :])
    for i in range(32)
]


def test_unnamed_tenants_whose_ids_nearly_match_never_share_a_label(env):
    uow = UnitOfWork(env.engine)
    with uow:
        for tenant in CLOSE_IDS:
            add_entity(uow, EntityType.GLOBAL_METADATA, tenant, REVENUE, tier=Tier.TIER1)
        uow.commit()

    definitions = load_defs()  # the code location loads: no two tenants' assets conflict
    dg.Definitions.validate_loadable(definitions)
    assert tenant_label(CLOSE_IDS[0], None) == "t_000000000a11_8000_7000_0000_0190a1b2"
    specs = {spec.key: spec for spec in definitions.resolve_all_asset_specs()}
    keys = {dg.AssetKey([tenant_label(t, None), "demo", "main", "orders"]) for t in CLOSE_IDS}
    assert len(keys) == len(CLOSE_IDS) and keys <= set(specs)
    assert {specs[k].metadata["mdstudio/tenant"] for k in keys} == {str(t) for t in CLOSE_IDS}
    assert len({specs[k].group_name for k in keys}) == len(CLOSE_IDS)
    # The same labels on every load (a run worker, the sensor, the next reload).
    assert lineage.tenant_labels(UnitOfWork(env.engine), CLOSE_IDS) == {
        t: unnamed_label(t) for t in CLOSE_IDS
    }
