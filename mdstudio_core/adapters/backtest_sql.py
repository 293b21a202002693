"""The warehouse read of a backtest: a daily table's last days, counted per day under several
rule sets at once (the live and the proposed rules of a field), in one grouped statement.

The validity of a value is the profile's own expression (`warehouse._rule_condition`, with
the dialect's regex and the bounds met in UTC), and a day is the incremental column's day in
UTC as the incremental profile computes it (`incremental._day`), so a backtest day counts
exactly what a profile of that day's rows alone would count. It runs in one read-only
repeatable-read transaction under the preview's statement timeout: the table's latest day
(one lookup of the column's maximum, which an index answers), then the grouped read of the
window ending on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from mdstudio_core.adapters.incremental import signature
from mdstudio_core.adapters.incremental.expressions import _as_day, _day, _day_start
from mdstudio_core.adapters.warehouse.columns import _reflect, column_kind, incremental_column
from mdstudio_core.adapters.warehouse.compiler import (
    _column_aggregates,
    _column_counts,
    _ordered,
    _Spec,
    build_specs,
    render_sql,
)
from mdstudio_core.adapters.warehouse.engines import (
    DialectHooks,
    connect_to_source,
    failures_named,
    hooks_for,
    read_only_snapshot,
)
from mdstudio_core.adapters.warehouse.measure import _check_rule_pattern, column_metrics
from mdstudio_core.domain.backtest import ScoredRule
from mdstudio_core.domain.incremental import DayCounts
from mdstudio_core.domain.model import ColumnRule, Incremental

DAY = "mdstudio_day"


@dataclass(frozen=True)
class DayWindow:
    """The days read (oldest first, only days with rows), each rule set as it applies to its
    column, the last day of the table (None: it has no rows) and the grouped statement as run."""

    days: list[DayCounts]
    rules: list[ScoredRule]
    last_day: dt.date | None
    sql: str
    sql_params: dict[str, Any]


def read_days(
    engine: Engine,
    table: str,
    rules: Sequence[ColumnRule],
    incremental: Incremental,
    *,
    days: int,
    schema: str | None = None,
    source: str = "warehouse",
    timeout_s: float | None = 60.0,
) -> DayWindow:
    """Count `rules` per day over the last `days` days of the table (ending on its latest
    day). Raises a `warehouse.ProfileError` subclass when the table, a column or the
    incremental column is missing or unusable, or the read overruns the timeout."""
    hooks = hooks_for(engine.dialect.name)
    connection = read_only_snapshot(connect_to_source(engine, source))
    with failures_named(f"the backtest of {table}", timeout_s), connection, connection.begin():
        return _read(connection, hooks, table, rules, incremental, days, schema, source, timeout_s)


def _read(
    connection: Connection,
    hooks: DialectHooks,
    table: str,
    rules: Sequence[ColumnRule],
    incremental: Incremental,
    days: int,
    schema: str | None,
    source: str,
    timeout_s: float | None,
) -> DayWindow:
    dialect = connection.dialect.name
    reflected = _reflect(connection, schema, table, source)
    inc = incremental_column(reflected, incremental)
    kind = column_kind(inc.type)
    for rule in rules:
        if rule.pattern is not None:
            _check_rule_pattern(connection, hooks, rule.name, rule.pattern)
    specs = build_specs(reflected, rules)
    scored = [_scored(spec) for spec in specs]
    with hooks.limits(connection, timeout_s):
        latest = connection.execute(sa.select(_day(sa.func.max(inc), kind, dialect))).scalar()
    if latest is None:
        return DayWindow([], scored, None, "", {})
    last_day = _as_day(latest)
    first_day = last_day - dt.timedelta(days=days - 1)
    statement = grouped_days(reflected, inc, kind, specs, hooks, dialect, first_day)
    with hooks.limits(connection, timeout_s):
        rows = connection.execute(statement).mappings().all()
    sql, params = render_sql(statement, connection.engine)
    return DayWindow([_day_counts(row, specs) for row in rows], scored, last_day, sql, params)


def grouped_days(
    table: sa.Table,
    inc: sa.Column[Any],
    kind: str,
    specs: Sequence[_Spec],
    hooks: DialectHooks,
    dialect: str,
    first_day: dt.date,
) -> sa.Select[Any]:
    """One aggregate grouped by day over the rows from `first_day` on: per day the row count
    and per rule set the non-null count, the valid count (when a value rule applies) and the
    distinct count (when uniqueness is scored)."""
    day = _day(inc, kind, dialect).label(DAY)
    items: list[ColumnElement[Any]] = [day, sa.cast(sa.func.count(), sa.BigInteger()).label("n")]
    for spec in specs:
        col, i = table.c[spec.column.name], spec.index
        items += _column_aggregates(spec, col, hooks, str(i), min_max=False)
        if spec.rule.unique:
            distinct = sa.func.count(sa.distinct(_ordered(spec, col, hooks)))
            items.append(sa.cast(distinct, sa.BigInteger()).label(f"d_{i}"))
    return (
        sa.select(*items)
        .where(inc >= _day_start(first_day, inc, kind, dialect))
        .group_by(day)
        .order_by(day)
    )


def _day_counts(row: Any, specs: Sequence[_Spec]) -> DayCounts:
    columns = {}
    for spec in specs:
        distinct = row.get(f"d_{spec.index}")
        columns[signature(spec.rule)] = replace(
            _column_counts(row, str(spec.index)),
            distinct=None if distinct is None else int(distinct),
        )
    return DayCounts(day=_as_day(row[DAY]), row_count=int(row["n"]), columns=columns)


def _scored(spec: _Spec) -> ScoredRule:
    """The rule set as every day scores it: the notes a profile makes on what cannot apply."""
    measured = column_metrics(spec, 0, 0, None, None, None, None)
    return ScoredRule(
        rule=spec.rule,
        key=signature(spec.rule),
        data_type=measured.data_type,
        applied=tuple(measured.rules),
        not_applied=tuple(measured.rules_not_applied),
    )
