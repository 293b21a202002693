"""The probes that decide whether a pass may be incremental: what PostgreSQL knows of changes,
what the state already rules out, and the safety net over the settled rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from mdstudio_core.adapters.incremental.expressions import _checksum, _checksum_columns, _raw, _text
from mdstudio_core.adapters.incremental.shape import _Runner, _Table
from mdstudio_core.domain.incremental import TableState, iso, lowest


def _pg_statistics(connection: Connection, schema: str | None, table: str) -> dict[str, Any] | None:
    """The table's change counters, its file and when statistics last started counting; None
    when PostgreSQL keeps no counters for it (not a plain table, or `track_counts` off)."""
    row = (
        connection.execute(
            sa.text(
                "SELECT c.relkind, c.relfilenode, s.n_tup_ins, s.n_tup_upd, s.n_tup_del,"
                " current_setting('track_counts') AS track_counts,"
                " (SELECT d.stats_reset FROM pg_catalog.pg_stat_database d"
                "   WHERE d.datname = current_database()) AS stats_reset,"
                " pg_catalog.pg_postmaster_start_time() AS started"
                " FROM pg_catalog.pg_class c"
                " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                " LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.relid = c.oid"
                " WHERE n.nspname = coalesce(:schema, current_schema()) AND c.relname = :table"
            ),
            {"schema": schema, "table": table},
        )
        .mappings()
        .first()
    )
    if row is None or row["relkind"] != "r" or row["track_counts"] != "on":
        return None
    if row["n_tup_ins"] is None:
        return None
    return {
        "relfilenode": int(row["relfilenode"]),
        "inserted": int(row["n_tup_ins"]),
        "updated": int(row["n_tup_upd"]),
        "deleted": int(row["n_tup_del"]),
        "stats_reset": row["stats_reset"].isoformat() if row["stats_reset"] else None,
        "started": row["started"].isoformat(),
    }


def _statistics_reason(
    before: Mapping[str, Any] | None, now: Mapping[str, Any] | None
) -> str | None:
    if now is None:
        return (
            "PostgreSQL keeps no change counters for this table (not a plain table, or "
            "track_counts is off), and the state holds no checksum of its rows"
        )
    if before is None:
        return "the state holds no PostgreSQL change counters for this table"
    if before["relfilenode"] != now["relfilenode"]:
        return "the table was rewritten since the last pass (TRUNCATE, VACUUM FULL, CLUSTER)"
    if (
        before["started"] != now["started"]
        or before["stats_reset"] != now["stats_reset"]
        or now["inserted"] < before["inserted"]
    ):
        return (
            "PostgreSQL's statistics restarted since the last pass (a server restart or "
            "pg_stat_reset): changes since then cannot be ruled out"
        )
    updated = now["updated"] - before["updated"]
    deleted = now["deleted"] - before["deleted"]
    if updated or deleted:
        return (
            f"rows were changed since the last pass: {updated} updated, {deleted} deleted "
            "(pg_stat_user_tables)"
        )
    return None


def _state_reason(
    state: TableState,
    shape: _Table,
    after: Any,
    statistics: Mapping[str, Any] | None,
    checksummed: bool,
) -> str | None:
    """What the state and the warehouse's metadata already rule out, before any row is read."""
    changed = sorted(name for name, type_ in shape.types.items() if state.types.get(name) != type_)
    if changed:
        return f"column types changed since the last pass: {', '.join(changed)}"
    before = state.watermark
    went_down = after is None or (after != before and lowest((after, before)) == after)
    if before is not None and went_down:
        return (
            f"the largest {shape.inc.name} went down ({iso(shape.decode(before))} -> "
            f"{iso(shape.decode(after))}): rows at "
            "the watermark were deleted or updated"
        )
    if checksummed:
        if state.settled.checksum is None:
            return "the state holds no checksum of the settled rows"
        return None
    return _statistics_reason(state.settled.statistics, statistics)


def _settled_filter(column: sa.Column[Any], before: Any, dialect: str) -> ColumnElement[bool]:
    """The settled rows of the last pass: below its watermark, or without a value."""
    if before is None:
        return column.is_(None)
    return sa.or_(column < _raw(before, column, dialect), column.is_(None))


def _safety_net(
    runner: _Runner, shape: _Table, state: TableState, dialect: str, checksummed: bool
) -> str | None:
    """Are the settled rows still the rows the state counted? None when they are."""
    inc, settled = shape.inc, state.settled
    items: list[ColumnElement[Any]] = [
        sa.func.count().label("n"),
        sa.func.min(inc).label("inc_min"),
        sa.func.max(inc).label("inc_max"),
    ]
    if checksummed:
        columns = _checksum_columns(shape, shape.table)
        items += [c.label(f"checksum_{i}") for i, c in enumerate(_checksum(columns, dialect))]
    indexed = inc.name in shape.indexed and not checksummed
    statement = (
        sa.select(*items)
        .select_from(shape.table)
        .where(_settled_filter(inc, state.watermark, dialect))
    )
    if not checksummed and state.watermark is not None:
        # A range below the watermark and the rows without a value, apart: each is a range
        # of the index on the column (an OR of the two would read the whole index).
        below = (
            sa.select(*items)
            .select_from(shape.table)
            .where(inc < _raw(state.watermark, inc, dialect))
            .subquery("below")
        )
        nulls = sa.select(sa.func.count()).select_from(shape.table).where(inc.is_(None))
        statement = sa.select(
            (below.c.n + nulls.scalar_subquery()).label("n"), below.c.inc_min, below.c.inc_max
        )
    [row] = runner.rows("safety net", statement, None if indexed else "scan")
    label = iso(shape.decode(state.watermark)) or "(no value yet)"
    if row["n"] != settled.rows:
        return (
            f"rows below the watermark {label}: {row['n']} now, {settled.rows} counted "
            "(rows deleted, or arrived late with a value below the watermark)"
        )
    if (row["inc_min"], row["inc_max"]) != (settled.inc_min, settled.inc_max):
        return f"{inc.name} changed on rows below the watermark {label} (rows updated)"
    if checksummed:
        checksum = tuple(_text(row[f"checksum_{i}"]) for i in range(len(settled.checksum or ())))
        if checksum != settled.checksum:
            return f"rows below the watermark {label} were updated (their checksum changed)"
    return None
