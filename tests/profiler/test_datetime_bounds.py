"""Date and date-time bounds are exact: a date stays a date, a date-time keeps its time and zone,
a zoned bound never sits beside a naive one, and the warehouse compares instants whatever its
session's time zone."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from mdstudio_core.adapters import warehouse
from mdstudio_core.domain.model import Binding, ColumnRule, stored_binding
from mdstudio_core.service_layer.profiling import BoundEntity, profile_table
from tests.support.cli_helpers import run_cli
from tests.support.factories import metadata_request, store_snapshot

from .conftest import unique_table_name

PLUS_2 = dt.timezone(dt.timedelta(hours=2))
# 2024-01-01T00:00:00+02:00 is 2023-12-31T22:00:00Z. The rows around it, in UTC:
AFTER = dt.datetime(2023, 12, 31, 23, 30)  # the previous day, but after the bound
BEFORE = dt.datetime(2023, 12, 31, 21, 30)  # before the bound
LATE = dt.datetime(2024, 1, 2, 12, 0)


def test_a_date_stays_a_date_and_a_date_time_keeps_its_time_and_zone() -> None:
    rule = ColumnRule(name="at", min="2024-01-01T00:00:00+02:00", max="2024-01-02T10:30:00+02:00")
    assert rule.min == dt.datetime(2024, 1, 1, tzinfo=PLUS_2)
    assert rule.min.utcoffset() == dt.timedelta(hours=2)
    assert rule.max == dt.datetime(2024, 1, 2, 10, 30, tzinfo=PLUS_2)
    assert ColumnRule(name="d", min="2024-01-01").min == dt.date(2024, 1, 1)
    assert type(ColumnRule(name="d", min="2024-01-01").min) is dt.date
    assert ColumnRule(name="t", max="2024-01-01T10:00:00").max == dt.datetime(2024, 1, 1, 10)
    assert ColumnRule(name="n", min=0, max=2.5).max == 2.5
    # what is stored reads back the same
    binding = Binding(table="t", columns=[rule])
    assert stored_binding(binding.to_json()) == binding


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("2024-01-01T10:00:00+02:00", "2024-01-02T10:00:00"),
        ("2024-01-01T10:00:00", "2024-01-02T10:00:00Z"),
        ("2024-01-01", "2024-01-02T10:00:00"),
    ],
)
def test_bounds_of_different_kinds_are_refused_naming_max(low: str, high: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ColumnRule(name="at", min=low, max=high)
    [error] = refused.value.errors()
    assert error["loc"] == ("max",)
    assert "both must be numbers, both dates, or both date-times" in error["msg"]


def test_zoned_bounds_compare_as_instants() -> None:
    # 00:30 UTC is after 01:00+02:00 (23:00 UTC the day before), whatever the wall clocks say
    with pytest.raises(ValidationError, match="min must not be greater than max"):
        ColumnRule(name="at", min="2024-01-01T00:30:00+00:00", max="2024-01-01T01:00:00+02:00")
    ColumnRule(name="at", min="2024-01-01T01:00:00+02:00", max="2024-01-01T00:30:00+01:00")


# -- in the warehouse ------------------------------------------------------------------------


def _profile(engine: Engine, table: str, rule: dict) -> tuple[int | None, list[str]]:
    binding = Binding.model_validate({"source": "wh", "table": table, "columns": [rule]})
    [result] = profile_table([BoundEntity("ops.at", binding)], engine_for=lambda _s: engine)
    return result.columns[0].valid, result.warnings


def _table(engine: Engine, column_type: sa.types.TypeEngine, values: list[dt.datetime]) -> str:
    name = unique_table_name()
    table = sa.Table(name, sa.MetaData(), sa.Column("at", column_type))
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(table.insert(), [{"at": value} for value in values])
    return name


@pytest.fixture
def tokyo_pg(pg_engine: Engine) -> Iterator[Engine]:
    """The PostgreSQL warehouse with its session time zone far from UTC: comparisons must not
    depend on it."""
    engine = warehouse.create_engine(
        pg_engine.url, connect_args={"options": "-c TimeZone=Asia/Tokyo"}
    )
    yield engine
    engine.dispose()


@pytest.mark.parametrize(
    "engine_name", ["sqlite_engine", pytest.param("tokyo_pg", marks=pytest.mark.postgres)]
)
def test_a_zoned_bound_on_a_column_without_zone_is_compared_in_utc(
    request: pytest.FixtureRequest, engine_name: str
) -> None:
    """A SQLite date-time or a PostgreSQL `timestamp` holds no zone: the bound is compared as
    its UTC wall-clock time, and the profile says so."""
    engine = request.getfixturevalue(engine_name)
    table = _table(engine, sa.DateTime(), [AFTER, BEFORE, LATE])
    valid, warnings = _profile(engine, table, {"name": "at", "min": "2024-01-01T00:00:00+02:00"})
    assert valid == 2  # AFTER and LATE; the old date bound 2024-01-01 counted LATE only
    assert warnings == [
        "at: min 2024-01-01T00:00:00+02:00 compared as 2023-12-31T22:00:00 (UTC): the column "
        "has no time zone"
    ]
    valid, _ = _profile(engine, table, {"name": "at", "max": "2023-12-31T23:45:00-00:30"})
    assert valid == 2  # AFTER (23:30) and BEFORE are at or before 00:15 UTC


@pytest.mark.postgres
def test_a_zoned_bound_on_timestamptz_compares_instants(tokyo_pg: Engine) -> None:
    utc = [value.replace(tzinfo=dt.UTC) for value in (AFTER, BEFORE, LATE)]
    table = _table(tokyo_pg, sa.DateTime(timezone=True), utc)
    valid, warnings = _profile(tokyo_pg, table, {"name": "at", "min": "2024-01-01T00:00:00+02:00"})
    assert (valid, warnings) == (2, [])
    valid, _ = _profile(
        tokyo_pg,
        table,
        {
            "name": "at",
            "min": "2023-12-31T23:30:00+00:00",
            "max": "2024-01-01T08:30:00+09:00",  # 23:30 UTC, inclusive
        },
    )
    assert valid == 1  # AFTER only


@pytest.mark.postgres
def test_a_bound_without_zone_on_timestamptz_is_read_as_utc(tokyo_pg: Engine) -> None:
    utc = [value.replace(tzinfo=dt.UTC) for value in (AFTER, BEFORE, LATE)]
    table = _table(tokyo_pg, sa.DateTime(timezone=True), utc)
    valid, warnings = _profile(tokyo_pg, table, {"name": "at", "min": "2023-12-31T22:00:00"})
    assert valid == 2
    assert warnings == [
        "at: min 2023-12-31T22:00:00 compared as 2023-12-31T22:00:00+00:00 (UTC): the bound has "
        "no time zone, the column has one"
    ]
    valid, _ = _profile(tokyo_pg, table, {"name": "at", "min": "2024-01-01"})
    assert valid == 1  # LATE: a date means its midnight, UTC


def test_submitting_a_zoned_bound_beside_a_naive_one_is_exit_2(
    store_url: str, monkeypatch: pytest.MonkeyPatch, tenant
) -> None:
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", str(tenant))
    column = {"name": "at", "min": "2024-01-01T10:00:00+02:00", "max": "2024-01-02T10:00:00"}
    request = metadata_request(binding={"table": "events", "columns": [column]})
    engine = sa.create_engine(store_url)
    before = store_snapshot(engine)
    result = run_cli(
        ["approvals", "submit", "--file", "-", "--user", "alice"], stdin=json.dumps(request)
    )
    assert result.exit_code == 2, result.stderr
    assert "payload.binding.columns[0].max" in result.stderr
    assert store_snapshot(engine) == before
    engine.dispose()
