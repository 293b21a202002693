"""A table bound with `incremental.partition: day` in Dagster: its asset is daily-partitioned,
each profiling run materializes the days it read (each day's counts and scores as that
partition's metadata, and the day's `quality_score_threshold` check), the entity's profile
carries how it was taken, and materializing chosen days from the UI counts them again."""

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from mdstudio_core.service_layer import profile_requests
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from mdstudio_pipelines.lib.asset_keys import ENTITY_PROFILE, QUALITY_CHECK, table_key
from mdstudio_pipelines.lib.dagster_internals import check_evaluations, no_defs_state_storage
from mdstudio_pipelines.lib.partitions import partition_key
from tests.pipelines.conftest import load_defs
from tests.support.factories import person, unnamed_label

KEY = "sales.events.amount"
DAY0 = dt.datetime(2024, 3, 1, 9)
BINDING = {
    "source": "demo",
    "table": "events",
    "incremental": {"column": "loaded_at", "partition": "day"},
    "columns": [{"name": "id", "unique": True}, {"name": "amount", "min": 0}],
}


def add_events(env, rows: list[tuple[int, dt.datetime, float]]) -> None:
    engine = sa.create_engine(_warehouse_url())
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS events (id integer, loaded_at timestamp, amount real)"
        )
        connection.execute(
            sa.text("INSERT INTO events VALUES (:id, :at, :amount)"),
            [{"id": i, "at": at, "amount": amount} for i, at, amount in rows],
        )
    engine.dispose()


def _warehouse_url() -> str:
    import os

    return os.environ["MDSTUDIO_SOURCE_DEMO_URL"]


def day_materializations(env, key: dg.AssetKey) -> dict[str, dict]:
    records = env.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key), limit=100, ascending=True
    ).records
    return {
        r.partition_key: {
            k: getattr(v, "value", v) for k, v in r.asset_materialization.metadata.items()
        }
        for r in records
    }


def test_a_daily_table_materializes_the_days_each_pass_read(env):
    add_events(env, [(i, DAY0 + dt.timedelta(days=i // 3, hours=i % 3), 10.0) for i in range(6)])
    env.approve(key=KEY, binding=BINDING)
    key = table_key(_settings(), unnamed_label(env.tenant), "demo", None, "events")

    defs = load_defs()
    asset = defs.resolve_assets_def(key)
    spec = asset.specs_by_key[key]
    assert isinstance(spec.partitions_def, dg.DailyPartitionsDefinition)
    assert spec.partitions_def.start.date() == dt.datetime.now(dt.UTC).date()  # no day yet
    assert key not in defs.resolve_job_def("profile_tables_job").asset_layer.executable_asset_keys
    [check] = asset.check_specs
    assert (check.name, check.partitions_def) == (QUALITY_CHECK, spec.partitions_def)

    [request] = env.tick().run_requests
    assert env.run(request).success
    days = day_materializations(env, key)
    assert sorted(days) == ["2024-03-01", "2024-03-02"]
    first = days["2024-03-01"]
    assert first["dagster/row_count"] == 3 and first["quality_score"] == 100.0
    assert first["columns"][KEY]["id"]["distinct"] == 3
    assert "mode" not in first and days["2024-03-02"]["mode"] == "full"
    pk = partition_key(env.tenant, KEY)
    [profile] = env.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=ENTITY_PROFILE, asset_partitions=[pk]), limit=5
    ).records
    metadata = profile.asset_materialization.metadata
    assert metadata["mode"].value == "full"
    assert metadata["full_reason"].value == "first profile of this table with binding.incremental"
    assert metadata["watermark_after"].value == "2024-03-02T11:00:00"
    assert metadata["rows_read"].value > 0
    checks = check_evaluations(env.instance, dg.AssetCheckKey(key, QUALITY_CHECK), None, 10)
    assert sorted(c.event.dagster_event.asset_check_evaluation_data.partition for c in checks) == [
        "2024-03-01",
        "2024-03-02",
    ]

    # The location reloads with the first day profiled; a day grows, another starts.
    assert load_defs().resolve_assets_def(key).specs_by_key[key].partitions_def.start.date() == (
        dt.date(2024, 3, 1)
    )
    add_events(
        env,
        [(7, DAY0 + dt.timedelta(days=1, hours=5), -1.0), (8, DAY0 + dt.timedelta(days=2), 5.0)],
    )
    profile_requests.request_profile(
        UnitOfWork(env.engine), person(env.tenant, "sam"), KEY, force=True
    )
    [request] = env.tick().run_requests
    assert env.run(request).success
    newest = (
        env.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=ENTITY_PROFILE, asset_partitions=[pk]), limit=1
        )
        .records[0]
        .asset_materialization.metadata
    )
    assert (newest["mode"].value, newest["watermark_before"].value) == (
        "incremental",
        "2024-03-02T11:00:00",
    )
    days = day_materializations(env, key)
    assert (
        days["2024-03-02"]["dagster/row_count"] == 4 and days["2024-03-02"]["quality_score"] < 100
    )
    assert days["2024-03-03"]["dagster/row_count"] == 1

    # Chosen days from the UI: one run for the range, each day counted again.
    with UnitOfWork(env.engine) as uow:
        before = {d.day: d.updated_at for d in uow.profile_days.list(env.tenant, KEY)}
    with no_defs_state_storage():
        result = dg.materialize(
            [load_defs().resolve_assets_def(key)],
            instance=env.instance,
            tags={
                "dagster/asset_partition_range_start": "2024-03-01",
                "dagster/asset_partition_range_end": "2024-03-02",
            },
        )
    assert result.success
    with UnitOfWork(env.engine) as uow:
        after = {d.day: d.updated_at for d in uow.profile_days.list(env.tenant, KEY)}
    assert after[dt.date(2024, 3, 1)] > before[dt.date(2024, 3, 1)]
    assert after[dt.date(2024, 3, 2)] > before[dt.date(2024, 3, 2)]
    reported = [
        e.event_specific_data.materialization.partition
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and e.event_specific_data.materialization.asset_key == key
    ]
    assert {"2024-03-01", "2024-03-02"} <= set(reported)


def _settings():
    from mdstudio_core.config import Settings

    return Settings.from_env()
