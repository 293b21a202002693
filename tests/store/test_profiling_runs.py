"""A profiling run as the core does it, without Dagster (`service_layer.profiling.run_profiles`,
`record_failures`): one scan per table, what is saved and written to the outbox, what a retried
run does, and how a failure is recorded. `make mutation` found these paths exercised only by
the Dagster tests (tests/pipelines), which it leaves out."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from demo import warehouse as demo_warehouse
from mdstudio_core.adapters import tables
from mdstudio_core.adapters.warehouse import ProfileError
from mdstudio_core.config import Settings
from mdstudio_core.domain.errors import InvalidInput, NotFound
from mdstudio_core.domain.model import Binding, Tier, Trigger, entity_urn
from mdstudio_core.domain.quality import StoredProfile
from mdstudio_core.service_layer import approvals
from mdstudio_core.service_layer.profiling import (
    BoundEntity,
    ProfileTarget,
    RunOutcome,
    load_profiled,
    preview_approval,
    preview_entity,
    profile_table,
    record_failures,
    run_profiles,
    save_profiles,
    table_label,
)
from tests.support.factories import (
    DEMO_BINDING,
    DEMO_SCORE,
    KERNEL_OWNER,
    SETTINGS,
    STEWARD,
    approve_metadata,
    kpi_request,
    metadata_request,
    person,
    store_snapshot,
)

KEY = "finance.revenue.gross_amount"


@pytest.fixture
def demo_url(tmp_path) -> str:
    return demo_warehouse.build(tmp_path / "warehouse.db")


def settings(demo_url: str, **variables: str) -> Settings:
    return Settings.from_env({"MDSTUDIO_SOURCE_DEMO_URL": demo_url, **variables})


def events(engine, *types: str) -> list[tuple[str, str, dict]]:
    column = tables.events.c
    query = sa.select(column.type, column.entity_key, column.payload).order_by(column.id)
    if types:
        query = query.where(column.type.in_(types))
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def profile_rows(engine) -> list:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(tables.profiles).order_by(tables.profiles.c.id)))


def test_a_run_scans_each_table_once_and_saves_one_profile_per_entity(
    engine, uow, tenant, demo_url
):
    amount = approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    currency_key = "finance.revenue.currency"
    approve_metadata(
        engine,
        tenant,
        key=currency_key,
        tier="tier2",
        binding={**DEMO_BINDING, "columns": DEMO_BINDING["columns"][2:]},
    )
    scanned: list[str] = []
    real = settings(demo_url)

    def engine_for(source: str) -> sa.Engine:
        scanned.append(source)
        return sa.create_engine(demo_url)

    targets = [
        ProfileTarget(KEY, Trigger.APPROVAL, amount),
        ProfileTarget(currency_key, Trigger.SCHEDULE),
    ]
    outcome = run_profiles(uow, real, tenant, targets, run_id="run-1", engine_for=engine_for)

    assert scanned == ["demo"]
    assert (outcome.unbound, outcome.failed, outcome.saved_before) == ({}, {}, [])
    by_key = {saved.result.canonical_key: saved for saved in outcome.profiles}
    assert list(by_key) == [KEY, currency_key]
    saved = by_key[KEY]
    urn = entity_urn(tenant, KEY)
    assert saved.profile_id == uuid.uuid5(uuid.NAMESPACE_URL, f"run-1/{urn}")
    assert (saved.tier, saved.result.quality_score) == (Tier.TIER1, DEMO_SCORE)
    assert (saved.verdict.passed, saved.verdict.threshold) == (True, 80.0)
    assert (saved.result.trigger, saved.result.approval_id) == (Trigger.APPROVAL, amount)
    assert by_key[currency_key].tier is Tier.TIER2
    assert by_key[currency_key].verdict.threshold == 70.0

    rows = {row.canonical_key: row for row in profile_rows(engine)}
    assert set(rows) == {KEY, currency_key}
    row = rows[KEY]
    assert (row.id, row.tenant_id, row.entity_urn, row.run_id) == (
        saved.profile_id,
        tenant,
        urn,
        "run-1",
    )
    assert (row.quality_score, row.row_count, row.trigger) == (DEMO_SCORE, 20, "approval")
    assert row.approval_id == amount
    assert (row.details["source"], row.details["table"]) == ("demo", "orders")
    assert [column["name"] for column in row.columns] == ["order_id", "gross_amount", "currency"]
    assert rows[currency_key].trigger == "schedule"

    completed = {key: payload for _, key, payload in events(engine, "metadata.profile.completed")}
    assert completed[KEY] == {
        "canonical_key": KEY,
        "tier": "tier1",
        "quality_score": DEMO_SCORE,
        "completeness": saved.result.completeness,
        "uniqueness": saved.result.uniqueness,
        "validity": saved.result.validity,
        "row_count": 20,
        "profile_id": str(saved.profile_id),
        "run_id": "run-1",
        "trigger": "approval",
        "approval_id": str(amount),
        "check_passed": True,
        "threshold": 80.0,
    }
    assert completed[currency_key]["approval_id"] is None


def test_the_saved_row_is_the_profile_as_measured(engine, uow, tenant, demo_url):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    empty = "finance.revenue.empty"
    approve_metadata(engine, tenant, key=empty, binding={**DEMO_BINDING, "table": "no_orders"})
    warehouse = sa.create_engine(demo_url)
    with warehouse.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE no_orders (order_id INTEGER, gross_amount FLOAT, currency TEXT)"
        )
    warehouse.dispose()
    targets = [ProfileTarget(KEY), ProfileTarget(empty)]
    outcome = run_profiles(uow, settings(demo_url), tenant, targets, run_id="r")

    for saved in outcome.profiles:
        result, data = saved.result, saved.result.to_json()
        with uow:
            [stored] = uow.profiles.history(tenant, result.canonical_key)
        created = stored.created_at  # SQLite gives it back naive, in UTC
        assert (created if created.tzinfo else created.replace(tzinfo=dt.UTC)) == result.profiled_at
        assert dataclasses.replace(stored, created_at=result.profiled_at) == StoredProfile(
            id=saved.profile_id,
            tenant_id=tenant,
            entity_urn=entity_urn(tenant, result.canonical_key),
            canonical_key=result.canonical_key,
            quality_score=result.quality_score,
            completeness=result.completeness,
            uniqueness=result.uniqueness,
            validity=result.validity,
            row_count=result.row_count,
            columns=data["columns"],
            score_note=result.score_note,
            details={
                "source": "demo",
                "table": result.table,
                "warnings": data["warnings"],
                "sql_params": data["sql_params"],
            },
            trigger="manual",
            approval_id=None,
            run_id="r",
            sql=result.sql,
            sample=None,
            duration_ms=result.duration_ms,
            created_at=result.profiled_at,
            mode="full",
            rows_read=result.rows_read,
        )
    [scored, unscored] = [saved.result for saved in outcome.profiles]
    # A table bound without binding.incremental: every statement reads every row.
    assert scored.rows_read and scored.rows_read % scored.row_count == 0
    assert (scored.watermark_before, scored.watermark_after, scored.full_reason) == (None,) * 3
    assert scored.sql_params and scored.sql and scored.completeness is not None
    assert (unscored.quality_score, unscored.score_note) == (None, "table is empty")
    assert [saved.verdict.passed for saved in outcome.profiles] == [True, False]
    assert outcome.profiles[1].verdict.description == "not scored (table is empty)"


def test_a_retried_run_neither_scans_nor_saves_nor_reports_twice(engine, uow, tenant, demo_url):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    gone = "finance.revenue.gone"
    approve_metadata(engine, tenant, key=gone, binding={**DEMO_BINDING, "table": "orders_gone"})
    targets = [ProfileTarget(KEY), ProfileTarget(gone)]
    first = run_profiles(uow, settings(demo_url), tenant, targets, run_id="r")
    assert [saved.result.canonical_key for saved in first.profiles] == [KEY]
    assert list(first.failed) == [gone]
    written = events(engine)

    again = run_profiles(uow, settings(demo_url), tenant, targets, run_id="r")

    assert again.profiles == [] and again.saved_before == [KEY]
    assert again.failed == first.failed
    assert events(engine) == written
    assert len(profile_rows(engine)) == 1


def test_entities_that_cannot_be_profiled_are_named_with_the_reason(engine, uow, tenant, demo_url):
    approve_metadata(engine, tenant, key="finance.unbound", binding=None)
    approve_metadata(engine, tenant, key="finance.retired", binding=DEMO_BINDING)
    approve_metadata(
        engine, tenant, key="finance.retired", binding=DEMO_BINDING, status="deprecated"
    )
    targets = [ProfileTarget(key) for key in ("finance.unbound", "finance.retired", "nowhere")]

    outcome = run_profiles(uow, settings(demo_url), tenant, targets, run_id="r")

    assert outcome == RunOutcome(
        unbound={
            "finance.unbound": "the entity is not bound to a warehouse table",
            "finance.retired": "the entity is deprecated",
            "nowhere": "the entity is not bound to a warehouse table",
        }
    )
    assert events(engine, "metadata.profile.completed", "metadata.profile.failed") == []
    with uow:
        profiled, not_profiled = load_profiled(uow, [(tenant, "finance.retired")])
    assert (profiled, list(not_profiled)) == ({}, [(tenant, "finance.retired")])


def test_a_failing_table_costs_only_its_own_entities(engine, uow, tenant, demo_url):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    broken = "finance.broken"
    approve_metadata(engine, tenant, key=broken, binding={**DEMO_BINDING, "table": "orders_gone"})
    elsewhere = "finance.elsewhere"  # the demo warehouse has no schema `sales`
    approve_metadata(engine, tenant, key=elsewhere, binding={**DEMO_BINDING, "schema": "sales"})

    outcome = run_profiles(
        uow,
        settings(demo_url),
        tenant,
        [ProfileTarget(KEY), ProfileTarget(broken), ProfileTarget(elsewhere)],
        run_id="r",
    )
    assert [saved.result.canonical_key for saved in outcome.profiles] == [KEY]
    assert sorted(outcome.failed) == [broken, elsewhere]
    assert "orders_gone" in outcome.failed[broken]  # the ProfileError's own text: what to fix
    [payload] = [p for _, k, p in events(engine, "metadata.profile.failed") if k == broken]
    assert payload == {
        "canonical_key": broken,
        "tier": "tier1",
        "run_id": "r",
        "error": outcome.failed[broken],
    }


def test_an_unexpected_error_is_recorded_by_type_and_table_only(engine, uow, tenant, demo_url):
    approve_metadata(
        engine, tenant, key=KEY, binding={**DEMO_BINDING, "schema": "sales", "table": "orders"}
    )

    def leaky(source: str) -> sa.Engine:
        raise RuntimeError("could not connect to postgresql://admin:Sup3rSecret@db/wh")

    outcome = run_profiles(
        uow,
        settings(demo_url),
        tenant,
        [ProfileTarget(KEY)],
        run_id="r",
        engine_for=leaky,
    )
    assert outcome.failed == {KEY: "RuntimeError while profiling demo.sales.orders"}
    assert "Sup3rSecret" not in str(events(engine))


def test_a_source_narrowed_after_approval_fails_the_entity_naming_the_rule(
    engine, uow, tenant, demo_url
):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    narrowed = settings(demo_url, MDSTUDIO_SOURCE_DEMO_TENANTS=str(uuid.uuid4()))
    scanned: list[str] = []

    outcome = run_profiles(
        uow,
        narrowed,
        tenant,
        [ProfileTarget(KEY)],
        run_id="r",
        engine_for=lambda source: scanned.append(source) or sa.create_engine(demo_url),
    )
    message = "not allowed: source 'demo' is not open to this tenant (MDSTUDIO_SOURCE_DEMO_TENANTS)"
    assert outcome.failed == {KEY: message}
    assert scanned == [] and outcome.profiles == []
    assert [payload["error"] for _, _, payload in events(engine, "metadata.profile.failed")] == [
        message
    ]


def test_a_failure_is_recorded_once_per_run_and_each_run_records_its_own(engine, uow, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    record = [(KEY, Tier.TIER1)]
    real = Settings.from_env({})
    for run_id in ("run-a", "run-a", "run-b"):
        record_failures(uow, real, tenant, record, run_id, f"down in {run_id}")
    failed = events(engine, "metadata.profile.failed")
    assert [payload["error"] for _, _, payload in failed] == ["down in run-a", "down in run-b"]
    with engine.connect() as connection:
        correlation = (
            connection.execute(
                sa.select(tables.events.c.correlation_id).where(
                    tables.events.c.type == "metadata.profile.failed"
                )
            )
            .scalars()
            .first()
        )
    urn = entity_urn(tenant, KEY)
    assert correlation == uuid.uuid5(uuid.NAMESPACE_URL, f"run-a/{urn}/failed")


def test_failures_without_a_run_are_each_recorded(engine, uow, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    real = Settings.from_env({})
    for _ in range(2):
        record_failures(uow, real, tenant, [(KEY, Tier.TIER1)], None, "down")
    failed = events(engine, "metadata.profile.failed")
    assert [payload["run_id"] for _, _, payload in failed] == [None, None]


def test_profiles_saved_without_a_run_are_each_kept(engine, uow, tenant, demo_url):
    """With no run id there is no idempotency key: saving twice keeps two profiles."""
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    demo = sa.create_engine(demo_url)
    [result] = profile_table(
        [BoundEntity(KEY, Binding.model_validate(DEMO_BINDING))], engine_for=lambda _source: demo
    )
    demo.dispose()
    saved = [
        save_profiles(uow, Settings.from_env({}), tenant, [(result, Tier.TIER1)], None)
        for _ in range(2)
    ]
    ids = [profiles[0].profile_id for profiles in saved]
    assert ids[0] != ids[1]
    assert {row.id for row in profile_rows(engine)} == set(ids)
    assert len(events(engine, "metadata.profile.completed")) == 2


def test_a_table_is_labelled_with_its_schema_when_it_has_one():
    from mdstudio_core.domain.model import Binding

    with_schema = Binding.model_validate({**DEMO_BINDING, "schema": "sales"})
    assert table_label(with_schema) == "demo.sales.orders"
    assert table_label(Binding.model_validate(DEMO_BINDING)) == "demo.orders"


def test_a_preview_profiles_the_live_binding_at_its_tier_and_saves_nothing(
    engine, uow, tenant, demo_url
):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.t2", tier="tier2", binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.unbound", binding=None)
    carol = person(tenant, "carol", STEWARD)
    before = store_snapshot(engine)

    preview = preview_entity(uow, settings(demo_url), carol, KEY)

    result = preview.result
    assert (result.canonical_key, result.tenant_id, result.quality_score) == (
        KEY,
        tenant,
        DEMO_SCORE,
    )
    assert (result.trigger, result.approval_id) == (Trigger.PREVIEW, None)
    assert (preview.verdict.passed, preview.verdict.threshold) == (True, 80.0)
    assert store_snapshot(engine) == before
    # The tier's own limits apply: sampling, which SQLite cannot do, is asked of tier1 only.
    sampled = settings(demo_url, MDSTUDIO_TIER1_SAMPLE_PERCENT="10")
    with pytest.raises(ProfileError, match="sampling is not supported"):
        preview_entity(uow, sampled, carol, KEY)
    tier2 = preview_entity(uow, sampled, carol, "finance.t2").verdict
    assert (tier2.tier, tier2.threshold) == (Tier.TIER2, 70.0)
    with pytest.raises(InvalidInput, match=r"finance\.unbound has no binding to profile") as caught:
        preview_entity(uow, settings(demo_url), carol, "finance.unbound")
    assert caught.value.field == "binding"
    with pytest.raises(NotFound, match=r"finance\.nowhere"):
        preview_entity(uow, settings(demo_url), carol, "finance.nowhere")


def test_a_preview_of_a_pending_approval_profiles_the_proposed_binding(uow, tenant, demo_url):
    alice = person(tenant, "alice", KERNEL_OWNER, STEWARD)  # a requester with the role may look
    request = metadata_request(
        key=KEY, binding={**DEMO_BINDING, "columns": DEMO_BINDING["columns"][:1]}
    )
    pending = approvals.submit(uow, alice, request, SETTINGS)
    empty = approvals.submit(
        uow, alice, metadata_request(key="finance.empty", binding=None), SETTINGS
    )
    warehouse = sa.create_engine(demo_url)
    with warehouse.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE no_orders (order_id INTEGER)")
    warehouse.dispose()
    nothing = approvals.submit(
        uow,
        alice,
        metadata_request(
            key="finance.nothing",
            binding={"source": "demo", "table": "no_orders", "columns": [{"name": "order_id"}]},
        ),
        SETTINGS,
    )

    preview = preview_approval(uow, settings(demo_url), alice, str(pending.id))

    assert (preview.result.approval_id, preview.result.tenant_id) == (pending.id, tenant)
    assert preview.result.trigger is Trigger.PREVIEW
    assert [c.name for c in preview.result.columns] == ["order_id"]
    unscored = preview_approval(uow, settings(demo_url), alice, nothing.id)
    assert unscored.verdict.description == "not scored (table is empty)"
    with pytest.raises(InvalidInput, match="no binding") as caught:
        preview_approval(uow, settings(demo_url), alice, empty.id)
    assert caught.value.field == "binding"
    kpi = approvals.submit(uow, alice, kpi_request(), SETTINGS)
    with pytest.raises(InvalidInput, match="only GLOBAL_METADATA") as caught:
        preview_approval(uow, settings(demo_url), alice, kpi.id)
    assert caught.value.field == "approval_id"


def test_each_column_keeps_its_type_and_range_as_measured(engine, uow, tenant, demo_url):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    outcome = run_profiles(uow, settings(demo_url), tenant, [ProfileTarget(KEY)], run_id="r")
    [saved] = outcome.profiles
    measured = [(c.name, c.data_type, c.min, c.max) for c in saved.result.columns]
    assert measured == [  # demo/warehouse.py, by hand
        ("order_id", "integer", 1, 20),
        ("gross_amount", "float", -15.0, 300.0),
        ("currency", "varchar(3)", "", "usd"),
    ]
    assert saved.result.tenant_id == tenant


def test_an_entity_skipped_or_refused_spares_the_targets_after_it(engine, uow, tenant, demo_url):
    """Unbound, refused and profiled targets in one run: each is handled on its own, and the
    refusal is recorded under the run; a source open to the tenant is profiled."""
    approve_metadata(engine, tenant, key="finance.unbound", binding=None)
    refused = "finance.refused"
    approve_metadata(engine, tenant, key=refused, binding={**DEMO_BINDING, "source": "closed"})
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    run_settings = settings(
        demo_url,
        MDSTUDIO_SOURCE_DEMO_TENANTS=str(tenant),
        MDSTUDIO_SOURCE_CLOSED_URL=demo_url,
        MDSTUDIO_SOURCE_CLOSED_TENANTS=str(uuid.uuid4()),
    )
    targets = [ProfileTarget(key) for key in ("finance.unbound", refused, KEY)]

    outcome = run_profiles(uow, run_settings, tenant, targets, run_id="r")

    assert list(outcome.unbound) == ["finance.unbound"]
    assert list(outcome.failed) == [refused]
    assert [saved.result.canonical_key for saved in outcome.profiles] == [KEY]
    [(_, key, payload)] = events(engine, "metadata.profile.failed")
    assert (key, payload["run_id"]) == (refused, "r")


def test_a_run_profiles_with_the_limits_of_its_entities_tier(engine, uow, tenant, demo_url):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    hurried = settings(demo_url, MDSTUDIO_TIER1_TIMEOUT_SECONDS="0.000000001")

    outcome = run_profiles(uow, hurried, tenant, [ProfileTarget(KEY)], run_id="r")

    assert outcome.profiles == []
    assert "exceeded the statement timeout of 1e-09 s" in outcome.failed[KEY]


def test_a_retried_failure_still_records_the_entities_not_recorded_yet(engine, uow, tenant):
    other = "finance.revenue.other"
    for key in (KEY, other):
        approve_metadata(engine, tenant, key=key, binding=DEMO_BINDING)
    real = Settings.from_env({})
    record_failures(uow, real, tenant, [(KEY, Tier.TIER1)], "r", "down")
    both = [(KEY, Tier.TIER1), (other, Tier.TIER1)]
    record_failures(uow, real, tenant, both, "r", "down")
    assert [key for _, key, _ in events(engine, "metadata.profile.failed")] == [KEY, other]


def test_a_profile_carries_each_dimension_and_names_its_table_with_the_schema(demo_url):
    demo = sa.create_engine(demo_url)
    scores = []
    for binding in (DEMO_BINDING, {**DEMO_BINDING, "schema": "main"}):
        entity = BoundEntity(KEY, Binding.model_validate(binding))
        [result] = profile_table([entity], engine_for=lambda _source: demo)
        scores.append((result.table, result.completeness, result.uniqueness, result.validity))
    demo.dispose()
    assert scores == [
        ("orders", 0.95, 0.95, pytest.approx(0.8411764705882353)),
        ("main.orders", 0.95, 0.95, pytest.approx(0.8411764705882353)),
    ]
