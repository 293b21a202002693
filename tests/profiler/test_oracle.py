"""The profiler agrees exactly with the pandas oracle on generated tables, on SQLite and on
PostgreSQL: nulls, duplicates, invalid values, empty tables, one row, unicode."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from mdstudio_core.adapters import warehouse
from mdstudio_core.domain.model import ColumnRule

from .conftest import unique_table_name
from .oracle import oracle

# Unicode but no NUL (PostgreSQL text cannot hold it) and no newline (Python's `$` also
# matches before a final newline, PostgreSQL's does not; patterns are documented as such).
ALPHABET = "aAbz09 .@-_éßЖ中😀"
TEXTS = st.sampled_from(
    ["anna@example.com", "x@y.io", "bob", "", " ", "Ж", "中文", "a.b", "ab9", "😀@中.de", "aß"]
) | st.text(alphabet=ALPHABET, max_size=6)
INTS = st.integers(min_value=-5, max_value=5) | st.integers(-(2**40), 2**40)
FLOATS = st.sampled_from([0.0, 0.5, -1.25, 3.0, 1e-7, 2.5e10]) | st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False
).map(lambda f: f + 0.0)
DATES = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2030, 12, 31))
PATTERNS = st.sampled_from(
    ["^[a-z]+$", "@", r"^\S+@\S+\.[a-z]+$", "中|😀", "^$", "[0-9]", "^a.b", "ß$", r"\.", "Ж+"]
)

COLUMNS: dict[str, tuple[Any, st.SearchStrategy[Any], str]] = {
    "i": (sa.BigInteger(), INTS, "Int64"),
    "s": (sa.Text(), TEXTS, "string"),
    "f": (sa.Float(), FLOATS, "Float64"),
    "d": (sa.Date(), DATES, "object"),
}


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def rules_for(draw: st.DrawFn, name: str, pool: list[Any]) -> ColumnRule:
    """Rules whose operands are often taken from the column's own values, so that generated
    tables have both valid and invalid values."""
    _, generated, _ = COLUMNS[name]
    values = st.sampled_from(pool) | generated
    kwargs: dict[str, Any] = {"name": name}
    if name == "s":
        if draw(st.integers(0, 3)) > 0:
            kwargs["pattern"] = draw(PATTERNS)
        if draw(st.integers(0, 3)) == 0:
            kwargs["allowed_values"] = draw(st.lists(values, min_size=1, max_size=4))
    elif name in ("i", "f"):
        if draw(st.booleans()):
            kwargs["allowed_values"] = draw(st.lists(values, min_size=1, max_size=4))
        low, high = draw(_maybe(values)), draw(_maybe(values))
        if low is not None and high is not None and low > high:
            low, high = high, low
        kwargs["min"], kwargs["max"] = low, high
    else:
        low, high = draw(_maybe(values)), draw(_maybe(values))
        if low is not None and high is not None and low > high:
            low, high = high, low
        kwargs["min"], kwargs["max"] = low, high
    return ColumnRule(**kwargs)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[ColumnRule]]:
    n = draw(st.sampled_from([0, 1, 2, 12]) | st.integers(0, 25))
    # Small pools of values make duplicates likely.
    pools = {
        name: draw(st.lists(strategy, min_size=1, max_size=5))
        for name, (_, strategy, _) in COLUMNS.items()
    }
    rows = [
        {
            name: None if draw(st.integers(0, 4)) == 0 else draw(st.sampled_from(pools[name]))
            for name in COLUMNS
        }
        for _ in range(n)
    ]
    rules = [draw(rules_for(name, pools[name])) for name in COLUMNS]
    return rows, rules


def _create(engine: Engine, rows: list[dict[str, Any]]) -> str:
    name = unique_table_name()
    table = sa.Table(name, sa.MetaData(), *[sa.Column(c, t) for c, (t, _, _) in COLUMNS.items()])
    with engine.begin() as connection:
        table.create(connection)
        if rows:
            connection.execute(table.insert(), rows)
    return name


def _drop(engine: Engine, name: str) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(f'DROP TABLE "{name}"'))


def _check(engine: Engine, rows: list[dict[str, Any]], rules: list[ColumnRule]) -> None:
    name = _create(engine, rows)
    try:
        metrics = warehouse.measure_table(engine, name, rules, timeout_s=60)
    finally:
        _drop(engine, name)
    assert metrics.row_count == len(rows)
    _assert_agrees_with_oracle(rows, rules, metrics.columns, with_bounds=True)


def _assert_agrees_with_oracle(
    rows: list[dict[str, Any]], rules: list[ColumnRule], columns: list, *, with_bounds: bool
) -> None:
    """Each column's counts (and, `with_bounds`, its min and max) are pandas' own."""
    for rule, measured in zip(rules, columns, strict=True):
        expected = oracle([r[rule.name] for r in rows], rule, COLUMNS[rule.name][2])
        got = (measured.n, measured.non_null, measured.distinct, measured.valid)
        want = (expected.n, expected.non_null, expected.distinct, expected.valid)
        assert got == want, (rule, got, want)
        if with_bounds:
            assert measured.min == expected.min, (rule, measured.min, expected.min)
            assert measured.max == expected.max, (rule, measured.max, expected.max)


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@_settings(80)
@given(data=tables())
def test_sqlite_agrees_with_pandas(sqlite_engine: Engine, data) -> None:
    rows, rules = data
    _check(sqlite_engine, rows, rules)


@pytest.mark.postgres
@_settings(30)
@given(data=tables())
def test_postgres_agrees_with_pandas(pg_engine: Engine, data) -> None:
    rows, rules = data
    _check(pg_engine, rows, rules)


def _fixed_rows() -> list[dict[str, Any]]:
    return [
        {"i": 1, "s": "anna@example.com", "f": 0.5, "d": dt.date(2024, 1, 1)},
        {"i": 1, "s": "not an email", "f": -3.0, "d": dt.date(2023, 6, 1)},
        {"i": 2, "s": None, "f": None, "d": None},
        {"i": None, "s": "中文@例子.com", "f": 10.0, "d": dt.date(2025, 1, 1)},
        {"i": 3, "s": "anna@example.com", "f": 0.5, "d": dt.date(2024, 1, 1)},
    ]


FIXED_RULES = [
    ColumnRule(name="i", unique=True, min=1, max=2),
    ColumnRule(name="s", pattern=r"^\S+@\S+\.[a-z]+$"),
    ColumnRule(name="f", min=0, allowed_values=[0.5, 10.0, 7]),
    ColumnRule(name="d", min=dt.date(2024, 1, 1)),
]


@pytest.mark.parametrize("high_cardinality", [False, True])
def test_both_distinct_shapes_agree_on_sqlite(
    sqlite_engine: Engine, high_cardinality: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sorted COUNT(DISTINCT) branch and the grouped branch count the same."""
    hooks = warehouse.DIALECT_HOOKS["sqlite"]
    if high_cardinality:
        patched = warehouse.DialectHooks(
            regex=hooks.regex,
            limits=hooks.limits,
            on_connect=hooks.on_connect,
            high_cardinality=lambda connection, table: {c.name for c in table.c},
        )
        monkeypatch.setitem(warehouse.DIALECT_HOOKS, "sqlite", patched)
    _check(sqlite_engine, _fixed_rows(), FIXED_RULES)


@pytest.mark.postgres
def test_fixed_table_on_postgres(pg_engine: Engine) -> None:
    _check(pg_engine, _fixed_rows(), FIXED_RULES)


@pytest.mark.postgres
def test_postgres_high_cardinality_shape_agrees(pg_engine: Engine) -> None:
    """With statistics saying every column is mostly distinct, the sorted shape is used."""
    rows = [
        {
            "i": k % 150_000,
            "s": f"u{k % 120_000}@x.io" if k % 7 else None,
            "f": k / 4,
            "d": dt.date(2000, 1, 1) + dt.timedelta(days=k % 9000),
        }
        for k in range(200_000)
    ]
    name = _create(pg_engine, rows)
    try:
        with pg_engine.begin() as connection:
            connection.execute(sa.text(f'ANALYZE "{name}"'))
            table = warehouse._reflect(connection, None, name, "test")
            high = warehouse._pg_high_cardinality(connection, table)
        assert {"i", "s", "f"} <= high
        metrics = warehouse.measure_table(pg_engine, name, FIXED_RULES, timeout_s=120)
        assert "count(DISTINCT" in metrics.sql
    finally:
        _drop(pg_engine, name)
    _assert_agrees_with_oracle(rows, FIXED_RULES, metrics.columns, with_bounds=True)


def _check_constrained(engine: Engine) -> None:
    """Columns unique by constraint take distinct = non-null without a distinct query, and
    still agree with pandas; a composite unique constraint proves nothing per column."""
    name = unique_table_name()
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("i", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("s", sa.Text, unique=True),
        sa.Column("f", sa.Float),
        sa.Column("d", sa.Date),
        sa.UniqueConstraint("f", "d"),
    )
    rows = [
        {"i": k, "s": None if k % 4 == 0 else f"user{k}@x.io", "f": float(k % 3), "d": None}
        for k in range(1, 40)
    ]
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(table.insert(), rows)
    try:
        metrics = warehouse.measure_table(engine, name, FIXED_RULES, timeout_s=60)
        only_unique = warehouse.measure_table(engine, name, FIXED_RULES[:2], timeout_s=60)
    finally:
        _drop(engine, name)
    assert "primary key or unique constraint): i, s" in metrics.sql
    assert "-- distinct pass" in metrics.sql
    assert "-- distinct pass" not in only_unique.sql
    _assert_agrees_with_oracle(rows, FIXED_RULES, metrics.columns, with_bounds=False)
    assert [c.distinct for c in only_unique.columns] == [39, 30]  # 9 of 39 emails are null


def test_unique_by_constraint_on_sqlite(sqlite_engine: Engine) -> None:
    _check_constrained(sqlite_engine)


@pytest.mark.postgres
def test_unique_by_constraint_on_postgres(pg_engine: Engine) -> None:
    _check_constrained(pg_engine)
