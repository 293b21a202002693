"""The Dagster adapter on a real (temporary) Dagster instance: the sensor's cursor, paging, run
keys, observations, skips and partitions; the table job's materializations, checks and saved
profiles; the tier schedules. The daemon end to end is in test_daemon.py."""

import datetime as dt
import uuid
from pathlib import Path

import dagster as dg
import orjson
import pytest
import sqlalchemy as sa

from demo import warehouse as demo_warehouse
from mdstudio_core.adapters import tables, warehouse
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Binding, Tier
from mdstudio_core.service_layer import profile_requests
from mdstudio_core.service_layer.profiling import BoundEntity, profile_table, save_profiles
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.defs.sensors import approvals
from mdstudio_pipelines.lib.asset_keys import CATALOG_ENTITY, ENTITY_PROFILE, QUALITY_CHECK
from mdstudio_pipelines.lib.dagster_internals import (
    check_evaluations,
    no_defs_state_storage,
    store_observations,
)
from mdstudio_pipelines.lib.partitions import CATALOG_ENTITIES, partition_key
from tests.pipelines.conftest import load_defs
from tests.support.factories import (
    BACKTRACKING_BINDING,
    DEMO_BINDING,
    SLOW_PATTERN_BINDING,
    bound_field,
    create_codes,
    metadata_request,
    person,
)


def expected_demo_score() -> float:
    order_id = (0.4 * 1 + 0.3 * 0.95) / 0.7
    gross = (0.4 * 17 / 20 + 0.3 * 15 / 17) / 0.7
    currency = (0.4 * 1 + 0.3 * 16 / 20) / 0.7
    return round(100 * (order_id + gross + currency) / 3, 2)


def test_definitions_name_what_the_issue_names(env):
    assert {s.name for s in load_defs().sensors} == {
        "approval_sensor",
        "notification_sensor",
        "approval_deadline_sensor",
        "profiling_pass_sensor",
    }
    assert {s.name for s in load_defs().schedules} == {
        "tier1_profiling_schedule",
        "tier2_profiling_schedule",
        "event_retention",
    }
    assert load_defs().resolve_assets_def(ENTITY_PROFILE).check_keys == {
        dg.AssetCheckKey(ENTITY_PROFILE, QUALITY_CHECK)
    }


def test_tier1_approval_becomes_one_run_that_profiles_and_checks(env):
    approval = env.approve()
    result = env.tick()
    [run_request] = result.run_requests
    assert run_request.tags["mdstudio/tenant"] == str(env.tenant)
    assert run_request.tags["mdstudio/tier"] == "tier1"
    assert run_request.tags["mdstudio/approval_id"] == str(approval.id)
    assert run_request.tags["mdstudio/reason"] == "STRUCTURAL"
    assert run_request.tags["mdstudio/priority"] == "high"
    assert run_request.tags["dagster/priority"] == "10"  # dequeued before everything else
    assert run_request.tags["mdstudio/source"] == "demo"
    pk = partition_key(env.tenant, "finance.revenue.gross_amount")
    assert pk in env.instance.get_dynamic_partitions(CATALOG_ENTITIES.name)
    observed = env.observations(CATALOG_ENTITY)
    assert [o["event_type"] for o in observed] == [
        "metadata.approved",
        "metadata.changed",
        "metadata.profile.due",
        "approval.approved",
    ]
    assert all(o["approval_id"] == str(approval.id) for o in observed)
    assert observed[0]["actor"] == "bob"

    assert env.run(run_request).success
    [materialization] = env.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ENTITY_PROFILE, asset_partitions=[pk]), limit=10
    ).records
    metadata = materialization.asset_materialization.metadata
    assert metadata["quality_score"].value == expected_demo_score()
    assert metadata["dagster/row_count"].value == 20
    assert metadata["trigger"].value == "approval"
    assert metadata["approval_id"].value == str(approval.id)
    with env.engine.connect() as connection:
        [row] = connection.execute(sa.select(tables.profiles)).all()
    assert str(row.id) == metadata["profile_id"].value
    assert row.quality_score == expected_demo_score()
    assert row.approval_id == approval.id
    [check] = check_evaluations(
        env.instance, dg.AssetCheckKey(ENTITY_PROFILE, QUALITY_CHECK), None, 10
    )
    evaluation = check.event.dagster_event.asset_check_evaluation_data
    assert evaluation.partition == pk
    assert evaluation.passed is (expected_demo_score() >= 80)
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR


def test_retried_run_saves_its_profile_once(env):
    env.approve()
    [run_request] = env.tick().run_requests
    job = load_defs().resolve_job_def("profile_tables_job")
    first = job.execute_in_process(run_config=run_request.run_config, instance=env.instance)
    # Same run id again (what a retried step does): the saved profile is not duplicated.
    result = profile_table(
        [BoundEntity("finance.revenue.gross_amount", Binding.model_validate(DEMO_BINDING))],
        engine_for=lambda source: warehouse.get_engine(source, Settings.from_env().sources),
    )
    settings = Settings.from_env()
    tiered = [(profile, Tier.TIER1) for profile in result]
    save_profiles(UnitOfWork(env.engine), settings, env.tenant, tiered, first.run_id)
    with env.engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(tables.profiles)).scalar_one()
            == 1
        )
        completed = connection.execute(
            sa.select(sa.func.count()).where(tables.events.c.type == "metadata.profile.completed")
        ).scalar_one()
    assert completed == 1  # the profile id is the event's idempotency key too


def test_tier3_approval_observed_but_never_profiled(env):
    env.approve(key="sales.misc.note", tier="tier3")
    result = env.tick()
    assert result.run_requests == []
    assert [o["event_type"] for o in env.observations(CATALOG_ENTITY, "sales.misc.note")] == [
        "metadata.approved",
        "metadata.changed",
        "approval.approved",
    ]


def test_second_change_within_interval_is_a_cost_guard_skip(env):
    env.approve()
    [run_request] = env.tick().run_requests
    env.run(run_request)
    changed = {**DEMO_BINDING, "columns": DEMO_BINDING["columns"][:2]}
    env.approve(binding=changed, label="Gross amount (v2)")
    result = env.tick()
    assert result.run_requests == []
    skips = env.skips(ENTITY_PROFILE)
    assert [s["reason"] for s in skips] == ["COST_GUARD"]


def test_run_still_going_counts_for_the_cost_guard(env):
    env.approve()
    [request] = env.tick().run_requests
    # The daemon has launched the run, which has not saved a profile yet.
    job = load_defs().resolve_job_def("profile_tables_job")
    env.instance.create_run_for_job(job, run_config=request.run_config, tags=request.tags)
    env.approve(binding={**DEMO_BINDING, "columns": DEMO_BINDING["columns"][:1]})
    assert env.tick().run_requests == []


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED])
def test_failed_and_cancelled_runs_do_not_count_for_the_cost_guard(env, status):
    env.approve()
    [request] = env.tick().run_requests
    job = load_defs().resolve_job_def("profile_tables_job")
    run = env.instance.create_run_for_job(job, run_config=request.run_config, tags=request.tags)
    env.instance.handle_run_event(
        run.run_id,
        dg.DagsterEvent(
            event_type_value=(
                dg.DagsterEventType.RUN_FAILURE.value
                if status == dg.DagsterRunStatus.FAILURE
                else dg.DagsterEventType.RUN_CANCELED.value
            ),
            job_name=job.name,
            message="gone",
        ),
    )
    assert env.instance.get_run_by_id(run.run_id).status == status
    env.approve(binding={**DEMO_BINDING, "columns": DEMO_BINDING["columns"][:1]})
    assert len(env.tick().run_requests) == 1  # retried: the lost run profiled nothing


def test_interval_zero_profiles_again(env, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_MIN_RERUN_HOURS", "0")
    env.approve()
    env.run(env.tick().run_requests[0])
    env.approve(binding={**DEMO_BINDING, "columns": DEMO_BINDING["columns"][:1]})
    assert len(env.tick().run_requests) == 1


def test_manual_request_on_unbound_entity_is_no_binding(env):
    env.approve(binding=None)
    env.tick()
    profile_requests.request_profile(
        UnitOfWork(env.engine), person(env.tenant, "carol"), "finance.revenue.gross_amount"
    )
    result = env.tick()
    assert result.run_requests == []
    skips = env.skips(ENTITY_PROFILE)
    assert [s["reason"] for s in skips] == ["NO_BINDING"]


def test_manual_force_passes_the_interval(env):
    env.approve()
    env.run(env.tick().run_requests[0])
    carol = person(env.tenant, "carol")
    profile_requests.request_profile(UnitOfWork(env.engine), carol, "finance.revenue.gross_amount")
    assert env.tick().run_requests == []
    profile_requests.request_profile(
        UnitOfWork(env.engine), carol, "finance.revenue.gross_amount", force=True
    )
    [run_request] = env.tick().run_requests
    assert run_request.tags["mdstudio/trigger"] == "manual"
    assert env.run(run_request).success
    with env.engine.connect() as connection:
        triggers = connection.execute(sa.select(tables.profiles.c.trigger)).scalars().all()
    assert sorted(triggers) == ["approval", "manual"]


def test_entities_on_one_table_share_one_run(env):
    env.approve(key="finance.revenue.gross_amount")
    env.approve(
        key="finance.revenue.currency",
        binding={**DEMO_BINDING, "columns": [DEMO_BINDING["columns"][2]]},
    )
    env.approve(key="finance.revenue.tier2", tier="tier2")
    [run_request] = env.tick().run_requests
    assert run_request.tags["mdstudio/entities"] == "3"
    assert run_request.tags["mdstudio/tier"] == "tier1"
    assert env.run(run_request).success
    with env.engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(tables.profiles)).scalar_one()
            == 3
        )


def test_tables_of_one_source_share_runs_and_a_broken_table_spares_the_others(
    env, tmp_path, monkeypatch
):
    import sqlite3

    with sqlite3.connect(tmp_path / "warehouse.db") as connection:
        for name in ("orders_a", "orders_b", "orders_c"):
            connection.execute(f"CREATE TABLE {name} AS SELECT * FROM orders")
    monkeypatch.setenv("MDSTUDIO_TABLES_PER_RUN", "2")
    for name in ("orders_a", "orders_b", "orders_c", "orders_gone"):
        env.approve(key=f"finance.revenue.{name}", binding={**DEMO_BINDING, "table": name})
    requests = env.tick().run_requests
    run_tables = [
        [t["table"] for t in r.run_config["ops"]["profile_tables"]["config"]["tables"]]
        for r in requests
    ]
    assert run_tables == [["demo.orders_a", "demo.orders_b"], ["demo.orders_c", "demo.orders_gone"]]
    assert [r.tags["mdstudio/tables"] for r in requests] == ["2", "2"]
    assert len({r.run_key for r in requests}) == 2
    assert env.run(requests[0]).success
    failed = (
        load_defs()
        .resolve_job_def("profile_tables_job")
        .execute_in_process(
            run_config=requests[1].run_config, instance=env.instance, raise_on_error=False
        )
    )
    assert not failed.success
    with env.engine.connect() as connection:
        keys = connection.execute(sa.select(tables.profiles.c.canonical_key)).scalars()
        assert sorted(keys) == [
            "finance.revenue.orders_a",
            "finance.revenue.orders_b",
            "finance.revenue.orders_c",
        ]
    failures = [
        o
        for o in env.observations(ENTITY_PROFILE, "finance.revenue.orders_gone")
        if o["event_type"] == "metadata.profile.failed"
    ]
    assert "orders_gone" in failures[0]["error"]


def test_cursor_paging_and_stable_run_keys(env, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_SENSOR_MAX_EVENTS", "6")
    monkeypatch.setattr(approvals, "PAGE_SIZE", 4)
    for i in range(3):
        env.approve(key=f"finance.k{i}", tier="tier3")  # 3 events each
    first = env.tick()
    assert orjson.loads(first.cursor)["position"] == 6
    second = env.tick()
    assert orjson.loads(second.cursor)["position"] == 9
    assert isinstance(env.tick(), dg.SkipReason)
    # Re-evaluating from an old cursor (a retried tick) gives the same run keys.
    env.approve()
    env.cursor = "9"
    keys_a = [r.run_key for r in env.tick().run_requests]
    env.cursor = "9"
    keys_b = [r.run_key for r in env.tick().run_requests]
    assert keys_a == keys_b and len(keys_a) == 1


def test_tier1_schedule_profiles_active_bound_entities_under_the_guard(env):
    env.approve()
    env.approve(key="finance.revenue.unbound", binding=None)
    env.approve(key="finance.revenue.tier2", tier="tier2")
    when = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
    queued = env.schedule("tier1_profiling_schedule", when)
    assert isinstance(queued, dg.SkipReason) and "queued" in queued.skip_message
    [request] = env.pass_tick().run_requests
    assert request.run_key.startswith("tier1_profiling_schedule:2026-11-26T02:00:")
    assert request.tags["mdstudio/trigger"] == "schedule"
    assert env.run(request).success
    assert isinstance(env.pass_tick(), dg.SkipReason)  # the pass is planned
    env.schedule("tier1_profiling_schedule", when)  # the same slot again: no second pass
    assert isinstance(env.pass_tick(), dg.SkipReason)
    env.schedule("tier1_profiling_schedule", when + dt.timedelta(hours=1))
    assert env.pass_tick().run_requests == []
    skips = env.skips(ENTITY_PROFILE)
    assert [(s["reason"], s["slot"]) for s in skips] == [
        ("COST_GUARD", "tier1_profiling_schedule:2026-11-26T03:00")
    ]


def test_tier2_schedule_covers_active_tier2_and_skips_deprecated_and_drafts(env):
    env.approve(key="finance.t2.active", tier="tier2")
    env.approve(key="finance.t2.deprecated", tier="tier2")
    env.approve(key="finance.t2.deprecated", tier="tier2", status="deprecated")
    env.approve(key="finance.t2.draft", tier="tier2", lane="draft")
    env.approve(key="finance.t1.active")
    when = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)
    env.schedule("tier2_profiling_schedule", when)
    [request] = env.pass_tick().run_requests
    [table] = request.run_config["ops"]["profile_tables"]["config"]["tables"]
    assert table["canonical_keys"] == ["finance.t2.active"]
    assert request.tags["mdstudio/tier"] == "tier2"
    assert request.tags["mdstudio/priority"] == "low"
    assert request.tags["dagster/priority"] == "-10"
    assert request.run_key.startswith("tier2_profiling_schedule:2026-11-29T03:00:")


def bind_tables(env, count: int, tenant=None) -> list[str]:
    """One tier1 field on each of `count` tables of a warehouse of empty tables, written to the
    store directly (no approvals: thousands of them would take minutes); their keys."""
    tenant = tenant or env.tenant
    now = dt.datetime.now(dt.UTC)
    keys = []
    with UnitOfWork(env.engine) as uow:
        for i in range(count):
            key = f"finance.table{i:04d}.amount"
            binding = {"source": "demo", "table": f"t{i:04d}", "columns": [{"name": "amount"}]}
            bound_field(uow, tenant, key, binding, owner="finance-data", by="bench", at=now)
            keys.append(key)
        uow.commit()
    return keys


def test_a_pass_too_large_for_one_tick_is_planned_a_page_per_tick_and_covers_every_table(
    env, monkeypatch
):
    """Before, one tick requested every run of a pass: at a second of the daemon's per run, a
    catalog of this many tables at one table per run needed more than Dagster's 60 s. Now each
    tick plans at most MDSTUDIO_SCHEDULE_TABLES_PER_TICK tables, and the ticks together request
    every due table exactly once; a tick evaluated again asks for the same runs."""
    monkeypatch.setenv("MDSTUDIO_TABLES_PER_RUN", "1")
    monkeypatch.setenv("MDSTUDIO_SCHEDULE_TABLES_PER_TICK", "7")
    tables = 75  # > 60 runs of a second each in one tick
    keys = bind_tables(env, tables - 5)
    other_tenant = uuid.uuid4()
    keys += bind_tables(env, 5, tenant=other_tenant)
    env.schedule("tier1_profiling_schedule", dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC))
    requests: list[dg.RunRequest] = []
    pages: list[int] = []
    while True:
        committed = env.pass_cursor
        result = env.pass_tick()
        if isinstance(result, dg.SkipReason):
            break
        if len(pages) == 3:  # the daemon died before committing this tick: evaluated again
            again = env.pass_tick(cursor=committed)
            assert [r.run_key for r in again.run_requests] == [
                r.run_key for r in result.run_requests
            ]
        pages.append(len(result.run_requests))
        requests += result.run_requests
    assert pages == [7] * 10 + [5]  # every tick within its budget, 75 tables in 11 ticks
    keys_requested = [
        (r.tags["mdstudio/tenant"], table["canonical_keys"][0])
        for r in requests
        for table in r.run_config["ops"]["profile_tables"]["config"]["tables"]
    ]
    assert sorted(keys_requested) == sorted(
        [(str(env.tenant), key) for key in keys[:70]]
        + [(str(other_tenant), key) for key in keys[70:]]
    )
    assert len({r.run_key for r in requests}) == tables
    pass_id = orjson.loads(env.pass_cursor)["pass"]
    with UnitOfWork(env.engine) as uow:
        recorded = uow.passes.get(pass_id)
        assert uow.passes.next_open(0) is None
    assert (recorded.tables_planned, recorded.runs_requested) == (tables, tables)
    assert recorded.finished_at is not None


def test_a_deprecated_field_asks_for_no_profile(env):
    env.approve()
    env.run(env.tick().run_requests[0])
    deprecation = {**DEMO_BINDING, "columns": DEMO_BINDING["columns"][:1]}  # structural, too
    env.approve(binding=deprecation, status="deprecated")
    assert env.tick().run_requests == []
    assert "metadata.profile.due" not in [
        o["event_type"] for o in env.observations(CATALOG_ENTITY)[4:]
    ]


def test_per_tier_timeout_applies_through_a_real_run(env, monkeypatch, tmp_path):
    """A tier1 profile of a large table under a 50 ms timeout fails its run with a timeout;
    the same table at tier2 (its own, default limit) profiles."""
    import sqlite3

    with sqlite3.connect(tmp_path / "warehouse.db") as connection:
        connection.execute(
            "CREATE TABLE orders_big AS WITH RECURSIVE n(i) AS "
            "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) "
            "SELECT i AS order_id, i * 1.5 AS gross_amount, 'EUR' AS currency FROM n"
        )
    big = {**DEMO_BINDING, "table": "orders_big"}
    monkeypatch.setenv("MDSTUDIO_TIER1_TIMEOUT_SECONDS", "0.05")
    env.approve(binding=big)
    failed = env.run_allowing_failure(env.tick().run_requests[0])
    assert not failed.success
    [failure] = [
        o for o in env.observations(ENTITY_PROFILE) if o["event_type"] == "metadata.profile.failed"
    ]
    assert "timeout" in failure["error"]
    env.approve(key="finance.revenue.tier2", tier="tier2", binding=big)
    assert env.run(env.tick().run_requests[0]).success


def test_materializing_one_partition_from_the_ui_profiles_that_entity(env, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_TIER1_MIN_SCORE", "95")
    env.approve()
    pk = partition_key(env.tenant, "finance.revenue.gross_amount")
    env.instance.add_dynamic_partitions(CATALOG_ENTITIES.name, [pk])
    from mdstudio_pipelines.defs.assets import entity_profile

    resources = {"catalog": CatalogResource()}
    # Each materialize builds definitions; a run may leave an instance it made (and that is
    # collected at any moment) as Dagster's defs state storage (`no_defs_state_storage`).
    with no_defs_state_storage():
        result = dg.materialize(
            [entity_profile], partition_key=pk, instance=env.instance, resources=resources
        )
    assert result.success
    [materialization] = result.asset_materializations_for_node("entity_profile")
    assert materialization.metadata["quality_score"].value == expected_demo_score()
    assert materialization.metadata["trigger"].value == "manual"
    [evaluation] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert evaluation.passed is False  # 91.89 is below the configured 95
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.partition == pk

    env.approve(key="finance.revenue.unbound", binding=None)
    unbound = partition_key(env.tenant, "finance.revenue.unbound")
    env.instance.add_dynamic_partitions(CATALOG_ENTITIES.name, [unbound])
    with no_defs_state_storage():
        failed = dg.materialize(
            [entity_profile],
            partition_key=unbound,
            instance=env.instance,
            resources=resources,
            raise_on_error=False,
        )
    assert not failed.success


def test_audit_trail_oldest_first_and_repeats_read_once(env):
    env.approve()
    result = env.tick()
    env.run(result.run_requests[0])
    from mdstudio_core.service_layer.unit_of_work import UnitOfWork
    from mdstudio_pipelines.lib.audit import timeline

    with UnitOfWork(env.engine) as uow:
        outbox = uow.events.list(tenant_id=env.tenant)
    # A retried tick writes its observations again: the trail shows each step once.
    store_observations(env.instance, [approvals.event_observation(e) for e in outbox])
    trail = timeline(env.instance, env.tenant, "finance.revenue.gross_amount")
    assert [(t["kind"], t["details"]["event_type"]) for t in trail] == [
        ("observation", "metadata.approved"),
        ("observation", "metadata.changed"),
        ("observation", "metadata.profile.due"),
        ("observation", "approval.approved"),
        ("observation", "metadata.profile.run_requested"),
        ("materialization", "metadata.profile.completed"),
        ("check", "quality.check"),
    ]
    assert trail[5]["details"]["quality_score"] == expected_demo_score()
    stamps = [t["at"] for t in trail]
    assert stamps == sorted(stamps)


SENSOR_ON_DEFAULT_STORE = """
import dagster as dg
import orjson
from mdstudio_pipelines.definitions import defs

with dg.instance_for_test() as instance:
    defs = defs()
    with dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources
    ) as context:
        result = defs.resolve_sensor_def("approval_sensor")(context)
    print(orjson.loads(result.cursor)["position"], len(result.run_requests))
"""


def test_code_location_reads_the_store_the_cli_wrote_on_the_default(tmp_path):
    """No MDSTUDIO_DATABASE_URL: the CLI and the Dagster code location both resolve the SQLite
    store under MDSTUDIO_HOME (it used to fail to load, wanting the variable)."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MDSTUDIO_")}
    env |= {
        "MDSTUDIO_HOME": str(tmp_path / "home"),
        "MDSTUDIO_TENANT": str(uuid.uuid4()),
        "MDSTUDIO_SOURCE_DEMO_URL": demo_warehouse.build(tmp_path / "warehouse.db"),
    }
    mdstudio = [str(Path(sys.executable).parent / "mdstudio")]

    def cli(*args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [*mdstudio, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("db", "upgrade")
    request = json.dumps(metadata_request(binding=DEMO_BINDING))
    approval = json.loads(
        cli("approvals", "submit", "--file", "-", "--user", "a", "--json", stdin=request)
    )
    cli("approvals", "approve", approval["id"], "--user", "b", "--role", "kernel_owner")
    assert (tmp_path / "home" / "mdstudio.db").exists()
    done = subprocess.run(
        [sys.executable, "-c", SENSOR_ON_DEFAULT_STORE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["4", "1"]  # the approval's four events, one profiling run


def test_a_source_narrowed_after_approval_fails_its_profile_naming_the_rule(env, monkeypatch):
    env.approve()
    [request] = env.tick().run_requests
    monkeypatch.setenv("MDSTUDIO_SOURCE_DEMO_TENANTS", str(uuid.uuid4()))  # someone else's now
    assert not env.run_allowing_failure(request).success
    [failure] = [
        o for o in env.observations(ENTITY_PROFILE) if o["event_type"] == "metadata.profile.failed"
    ]
    assert "MDSTUDIO_SOURCE_DEMO_TENANTS" in failure["error"]
    with env.engine.connect() as connection:
        assert connection.execute(sa.select(tables.profiles)).all() == []


def test_no_secret_in_any_dagster_event_and_a_failing_table_spares_the_others(
    env, monkeypatch, tmp_path, caplog
):
    """One source's URL does not parse (its password holds `@` and `:`), and one table of the
    good source raises an unexpected error: the run profiles the rest, and the secret appears in
    no Dagster event or log record."""
    import logging
    import sqlite3

    caplog.set_level(logging.DEBUG)
    secret = "Sup3rSecret"
    monkeypatch.setenv("MDSTUDIO_SOURCE_LEAKY_URL", f"postgresql+psycopg://r:p@ss:{secret}@h/db")
    with sqlite3.connect(tmp_path / "warehouse.db") as connection:
        connection.execute("CREATE TABLE orders_b AS SELECT * FROM orders")
    env.approve(key="finance.leaky", binding={**DEMO_BINDING, "source": "leaky"})
    env.approve(key="finance.good", binding=DEMO_BINDING)
    env.approve(key="finance.broken", binding={**DEMO_BINDING, "table": "orders_b"})
    measure = warehouse.measure_table

    def broken_on_orders_b(engine, table, *args, **kwargs):
        if table == "orders_b":
            raise RuntimeError(f"driver says: cannot reach r:p@ss:{secret}@h")
        return measure(engine, table, *args, **kwargs)

    monkeypatch.setattr(warehouse, "measure_table", broken_on_orders_b)
    requests = env.tick().run_requests
    results = [env.run_allowing_failure(request) for request in requests]
    assert len(requests) == 2 and not any(result.success for result in results)
    with env.engine.connect() as connection:
        keys = connection.execute(sa.select(tables.profiles.c.canonical_key)).scalars().all()
    assert keys == ["finance.good"]
    failures = {
        key: [
            o["error"]
            for o in env.observations(ENTITY_PROFILE, key)
            if o["event_type"] == "metadata.profile.failed"
        ]
        for key in ("finance.leaky", "finance.broken")
    }
    assert "MDSTUDIO_SOURCE_LEAKY_URL" in failures["finance.leaky"][0]
    assert "RuntimeError while profiling demo.orders_b" in failures["finance.broken"][0]
    for result in results:
        for entry in env.instance.all_logs(result.run_id):
            assert secret not in str(entry)
    assert all(secret not in record.getMessage() for record in caplog.records)


@pytest.mark.postgres
def test_per_tier_sampling_applies_through_a_real_run(env, monkeypatch, postgres_server):
    """MDSTUDIO_TIER2_SAMPLE_PERCENT reaches the warehouse: a tier2 run reads a sample (PostgreSQL
    TABLESAMPLE), a tier1 run of the same table reads it all."""
    url = postgres_server.create_database("mdstudio_sample_wh")
    warehouse_engine = sa.create_engine(url)
    with warehouse_engine.begin() as connection:
        for table in ("facts", "facts_copy"):
            connection.exec_driver_sql(
                f"CREATE TABLE {table} AS SELECT i AS order_id, i * 1.5 AS gross_amount,"
                " 'EUR' AS currency FROM generate_series(1, 100000) AS i"
            )
    warehouse_engine.dispose()
    monkeypatch.setenv("MDSTUDIO_SOURCE_PGW_URL", url)
    monkeypatch.setenv("MDSTUDIO_TIER2_SAMPLE_PERCENT", "20")
    facts = {**DEMO_BINDING, "source": "pgw", "schema": "public", "table": "facts"}
    env.approve(key="finance.sampled", tier="tier2", binding=facts)
    env.approve(key="finance.whole", tier="tier1", binding={**facts, "table": "facts_copy"})
    for request in env.tick().run_requests:
        assert env.run(request).success
    with env.engine.connect() as connection:
        rows = dict(
            connection.execute(
                sa.select(tables.profiles.c.canonical_key, tables.profiles.c.sample)
            ).all()
        )
    assert rows["finance.whole"] is None
    assert rows["finance.sampled"]["percent"] == 20
    assert 0 < rows["finance.sampled"]["rows"] < 100_000


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> float:
    """How long the run's step took, from its start to its success or failure (the run's own
    start-up, which varies with the machine, left out)."""
    at = {
        entry.dagster_event.event_type_value: entry.timestamp
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None
    }
    return (at.get("STEP_SUCCESS") or at["STEP_FAILURE"]) - at["STEP_START"]


def test_a_backtracking_pattern_cannot_hang_a_run(env, warehouse_url, monkeypatch):
    """The run profiles `^(a+)+$` over 40 a's and a mismatch at once, on SQLite and PostgreSQL
    (Python's `re` ran past any timeout on SQLite)."""
    create_codes(warehouse_url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", warehouse_url)
    monkeypatch.setenv("MDSTUDIO_TIER1_TIMEOUT_SECONDS", "1")
    env.approve(binding=BACKTRACKING_BINDING)
    [run_request] = env.tick().run_requests
    result = env.run(run_request)
    assert result.success
    assert step_seconds(env.instance, result.run_id) < 3
    with env.engine.connect() as connection:
        [row] = connection.execute(sa.select(tables.profiles)).all()
    [code] = row.columns
    assert (code["n"], code["non_null"], code["distinct"], code["valid"]) == (5, 4, 3, 2)
    assert row.duration_ms < 1000


@pytest.mark.postgres
def test_a_slow_pattern_on_postgres_fails_the_run_at_the_tier_timeout(env, slow_blobs_source):
    env.approve(binding=SLOW_PATTERN_BINDING)
    [run_request] = env.tick().run_requests
    failed = (
        load_defs()
        .resolve_job_def("profile_tables_job")
        .execute_in_process(
            run_config=run_request.run_config, instance=env.instance, raise_on_error=False
        )
    )
    assert not failed.success
    assert step_seconds(env.instance, failed.run_id) < 3
    [failure] = [
        o for o in env.observations(ENTITY_PROFILE) if o["event_type"] == "metadata.profile.failed"
    ]
    assert "exceeded the statement timeout of 1 s" in failure["error"]
    with env.engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(tables.profiles)).scalar()
            == 0
        )


INJECTION = "\n```\n# Injected [link](http://x)"


def test_values_cannot_format_the_ui_and_are_kept_apart_from_the_sql(env):
    """An allowed value that would close a Markdown code block and add a heading and a link is
    inert: the SQL is plain text with placeholders, the values are JSON beside it."""
    currency = {"name": "currency", "allowed_values": ["EUR", "USD", "GBP", INJECTION]}
    env.approve(binding={**DEMO_BINDING, "columns": [*DEMO_BINDING["columns"][:2], currency]})
    [run_request] = env.tick().run_requests
    assert env.run(run_request).success
    pk = partition_key(env.tenant, "finance.revenue.gross_amount")
    [record] = env.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ENTITY_PROFILE, asset_partitions=[pk]), limit=10
    ).records
    metadata = record.asset_materialization.metadata
    assert isinstance(metadata["sql"], dg.TextMetadataValue)
    assert not [k for k, v in metadata.items() if isinstance(v, dg.MarkdownMetadataValue)]
    assert "Injected" not in metadata["sql"].value and ":param_" in metadata["sql"].value
    assert isinstance(metadata["sql_params"], dg.JsonMetadataValue)
    shown = [v for params in metadata["sql_params"].value.values() for v in params.values()]
    assert INJECTION in shown
    with env.engine.connect() as connection:
        [row] = connection.execute(sa.select(tables.profiles)).all()
    assert "Injected" not in row.sql and ":param_" in row.sql
    stored = [v for params in row.details["sql_params"].values() for v in params.values()]
    assert INJECTION in stored


def test_a_tick_is_bounded_by_bytes_as_well_as_by_events(env, monkeypatch):
    """Each approval of a metadata field writes about 2 KB of event payloads; a tick bounded to
    3,000 bytes reads a few events, and the backlog drains over several ticks, each event
    observed once."""
    monkeypatch.setenv("MDSTUDIO_SENSOR_MAX_BYTES", "3000")
    for i in range(3):
        env.approve(key=f"finance.bytes.k{i}", tier="tier3")
    with UnitOfWork(env.engine) as uow:
        total = len(uow.events.list(limit=1000))
    cursors = []
    while not isinstance(result := env.tick(), dg.SkipReason):
        cursors.append(orjson.loads(result.cursor)["position"])
    assert len(cursors) > 1 and cursors[-1] == total
    observed = [
        o["event_id"]
        for i in range(3)
        for o in env.observations(CATALOG_ENTITY, f"finance.bytes.k{i}")
    ]
    assert sorted(observed) == list(range(1, total + 1))


def test_an_outbox_page_bounded_by_bytes_always_holds_one_event(env):
    env.approve(key="finance.big", tier="tier3", description="x" * 5000)
    with UnitOfWork(env.engine) as uow:
        [first] = uow.events.list(limit=10, max_bytes=10)
        everything = uow.events.list(limit=10)
        some = uow.events.list(limit=10, max_bytes=len(orjson.dumps(everything[0].payload)) + 10)
    assert first.id == everything[0].id
    assert [e.id for e in some] == [everything[0].id]
