"""The statements of a pass: the row pass over parts and days, the distinct counts of the
`unique` columns, and the distinct values per day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from mdstudio_core.adapters.incremental.expressions import (
    DAY,
    PART,
    PART_FRONTIER,
    PART_NEW,
    _as_day,
    _checksum,
    _checksum_columns,
    _empty,
)
from mdstudio_core.adapters.incremental.probes import _settled_filter
from mdstudio_core.adapters.incremental.shape import _Group, _Runner, _Table, signature
from mdstudio_core.adapters.warehouse.compiler import _column_aggregates, _column_counts, _Spec
from mdstudio_core.domain.incremental import Counts, DayCounts, total


def _row_pass(
    runner: _Runner,
    shape: _Table,
    rows: sa.Subquery,
    parts: Callable[[ColumnElement[Any]], dict[int, ColumnElement[bool]]],
    dialect: str,
    checksummed: bool,
    daily: bool,
    reads: str,
) -> dict[tuple[int, Any], _Group]:
    """One aggregate over the rows read: for each part (conditional aggregates, so PostgreSQL
    spreads it over its parallel workers as one single-row aggregate) and, for a daily table,
    each day: the row count, the incremental values' min and max, the checksum
    where one is kept, and every column's non-null and valid counts and min and max."""
    hooks = runner.hooks
    inc = rows.c[shape.inc.name]
    checksums = _checksum(_checksum_columns(shape, rows), dialect) if checksummed else []
    items: list[ColumnElement[Any]] = [rows.c[DAY]] if daily else []
    conditions = parts(inc)
    for p, inside in conditions.items():

        def only(aggregate: Any, inside: ColumnElement[bool] = inside) -> Any:
            return aggregate.filter(inside)

        items += [
            sa.cast(only(sa.func.count()), sa.BigInteger()).label(f"n_{p}"),
            sa.type_coerce(only(sa.func.min(inc)), inc.type).label(f"inc_min_{p}"),
            sa.type_coerce(only(sa.func.max(inc)), inc.type).label(f"inc_max_{p}"),
        ]
        items += [only(c).label(f"checksum_{i}_{p}") for i, c in enumerate(checksums)]
        for spec in shape.specs:
            col = rows.c[spec.column.name]
            items += _column_aggregates(spec, col, hooks, f"{spec.index}_{p}", only=only)
    statement = sa.select(*items).select_from(rows)
    if daily:
        statement = statement.group_by(rows.c[DAY])
    groups: dict[tuple[int, Any], _Group] = {}
    for row in runner.rows("row pass", statement, reads):
        day = _as_day(row[DAY]) if daily and row[DAY] is not None else None
        for p in conditions:
            if not row[f"n_{p}"]:
                continue
            group = _Group(
                rows=int(row[f"n_{p}"]),
                inc_min=row[f"inc_min_{p}"],
                inc_max=row[f"inc_max_{p}"],
                checksum=tuple(int(row[f"checksum_{i}_{p}"] or 0) for i in range(len(checksums)))
                if checksums
                else None,
            )
            for spec in shape.specs:
                group.counts[spec.index] = _column_counts(row, f"{spec.index}_{p}")
            groups[(p, day)] = group
    return groups


def _distinct(
    runner: _Runner,
    shape: _Table,
    spec: _Spec,
    rows: sa.Subquery,
    method: str,
    before: Any,
    reads: str,
    dialect: str,
) -> tuple[int, int]:
    """(new distinct values not among the settled rows, frontier values among neither).
    `method`: `full` (nothing settled), `range` (the new values lie outside the settled
    ones), `index` (an index finds each value), `scan` (one pass over the settled rows with
    the new values in a hash)."""
    name = spec.column.name
    raw = rows.c[name]
    part = rows.c[PART]
    values = (
        sa.select(
            raw.label("v"),
            sa.func.max(sa.case((part == PART_FRONTIER, 1), else_=0)).label("f"),
            sa.func.max(sa.case((part == PART_NEW, 1), else_=0)).label("m"),
            sa.func.count().label("k"),
        )
        .where(raw.is_not(None), part >= PART_NEW)
        .group_by(raw)
        .cte(f"new_{spec.index}")
    )
    settled = shape.table.alias("settled")
    earlier = settled.c[name]
    seen: ColumnElement[Any]
    source: sa.FromClause = values
    if method in ("full", "range"):
        seen = sa.false()
    elif method == "index":
        # Rows with the value in the whole table, from the index alone (no row is read where
        # the index can vouch for its page), against those among the rows read: any more are
        # settled rows.
        everywhere = (
            sa.select(sa.func.count())
            .select_from(settled)
            .where(earlier == values.c.v)
            .scalar_subquery()
        )
        seen = everywhere > values.c.k
    else:
        # The new values (read again: a handful of index lookups) in a hash, the settled rows
        # streamed past it, in parallel on PostgreSQL; only the few that match are kept.
        new_values = sa.select(raw).where(raw.is_not(None), part >= PART_NEW)
        hits = (
            sa.select(earlier.label("v"))
            .where(
                _settled_filter(settled.c[shape.inc.name], before, dialect),
                earlier.in_(new_values),
            )
            .distinct()
            .subquery(f"seen_{spec.index}")
        )
        source = values.outerjoin(hits, hits.c.v == values.c.v)
        seen = hits.c.v.is_not(None)
    flagged = (
        sa.select(
            values.c.f.label("f"), values.c.m.label("m"), sa.case((seen, 1), else_=0).label("s")
        )
        .select_from(source)
        .subquery(f"flagged_{spec.index}")
    )
    statement = sa.select(
        sa.func.count().label("values"),
        sa.func.coalesce(
            sa.func.sum(sa.case((sa.and_(flagged.c.m == 1, flagged.c.s == 0), 1), else_=0)), 0
        ).label("added"),
        sa.func.coalesce(
            sa.func.sum(
                sa.case((sa.and_(flagged.c.f == 1, flagged.c.m == 0, flagged.c.s == 0), 1), else_=0)
            ),
            0,
        ).label("frontier"),
    )
    # A full pass groups every value of the column: sorting them is what a distinct count
    # costs; a hash of nearly as many groups as rows would spill to disk.
    planner = {"enable_hashagg": "off"} if method == "full" else None
    [row] = runner.rows(f"distinct {name} ({method})", statement, reads, planner)
    if method == "scan":
        runner.scans += 1
    elif method == "index":
        runner.found += int(row["values"])
    return int(row["added"]), int(row["frontier"])


def _days(
    runner: _Runner,
    shape: _Table,
    rows: sa.Subquery,
    groups: dict[tuple[int, Any], _Group],
    unique: dict[str, _Spec],
    reads: str,
) -> list[DayCounts]:
    """Each day the pass read, whole: its rows summed over the parts, and the distinct values
    within the day of the `unique` columns."""
    per_day: dict[dt.date, list[_Group]] = {}
    for (_part, day), group in groups.items():
        if day is not None:
            per_day.setdefault(day, []).append(group)
    distinct: dict[str, dict[dt.date, int]] = {}
    for name in unique:
        raw = rows.c[name]
        statement = (
            sa.select(rows.c[DAY], sa.func.count(sa.distinct(raw)).label("d"))
            .where(rows.c[DAY].is_not(None))
            .group_by(rows.c[DAY])
        )
        distinct[name] = {
            _as_day(row[DAY]): int(row["d"])
            for row in runner.rows(f"days {name}", statement, reads)
        }
    out = []
    for day in sorted(per_day):
        chosen = per_day[day]
        columns: dict[str, Counts] = {}
        for spec in shape.specs:
            counts = total([g.counts.get(spec.index, _empty(spec)) for g in chosen])
            name = spec.column.name
            if name in unique:
                counts = replace(counts, distinct=distinct[name].get(day, 0))
            elif name in shape.unique_constraint:
                counts = replace(counts, distinct=counts.non_null)
            columns[signature(spec.rule)] = counts
        out.append(DayCounts(day=day, row_count=sum(g.rows for g in chosen), columns=columns))
    return out
