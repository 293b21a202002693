"""The expressions a pass is built of: parts, days, checksums and watermark bounds as the
warehouse stores them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from mdstudio_core.adapters.incremental.shape import _Table
from mdstudio_core.adapters.warehouse import DATE
from mdstudio_core.adapters.warehouse.compiler import _Spec
from mdstudio_core.domain.incremental import Counts

PART_SETTLED, PART_NEW, PART_FRONTIER = 0, 1, 2
PART, DAY = "mdstudio_part", "mdstudio_day"
HALF = 2**31  # SQLite sums the 62-bit checksum in two halves, so a sum never overflows


def _checksum(columns: Sequence[ColumnElement[Any]], dialect: str) -> list[ColumnElement[Any]]:
    """Aggregates whose values change when any of the rows summed changes."""
    if dialect == "sqlite":
        hashed = sa.func.mdstudio_checksum(*columns, type_=sa.BigInteger())
        return [sa.func.sum(hashed % HALF), sa.func.sum(hashed // HALF)]
    row_text = sa.cast(sa.tuple_(*columns), sa.Text())
    return [sa.func.sum(sa.func.hashtextextended(row_text, 0))]


def _day(value: ColumnElement[Any], kind: str, dialect: str) -> ColumnElement[Any]:
    """The row's day in UTC, as the warehouse computes it (never the session's zone)."""
    if dialect == "sqlite":
        return sa.func.date(value)
    if kind == DATE:
        return value
    if getattr(value.type, "timezone", False):
        return sa.cast(sa.func.timezone("UTC", value), sa.Date)
    return sa.cast(value, sa.Date)


def _as_day(value: Any) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def _utc_day(value: Any) -> dt.date:
    """The day (UTC) holding `value` (decoded)."""
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC) if value.tzinfo else value).date()
    return value


def _day_start(value: Any, column: sa.Column[Any], kind: str, dialect: str) -> ColumnElement[Any]:
    """The start of the day (UTC) holding `value` (decoded), as the column compares it. SQLite
    compares dates and times as text: the day itself (`YYYY-MM-DD`) sorts before every time of
    it, whatever format the rows were written in."""
    day = _utc_day(value)
    if dialect == "sqlite":
        return sa.literal(day.isoformat(), _AsStored())
    if kind == DATE:
        return sa.literal(day, column.type)
    start = dt.datetime.combine(day, dt.time())
    zoned = bool(getattr(column.type, "timezone", False))
    return sa.literal(start.replace(tzinfo=dt.UTC) if zoned else start, column.type)


class _AsStored(sa.types.TypeDecorator[Any]):
    """A SQLite value exactly as stored, converted neither way: SQLite keeps date-times as
    text, in whatever format they were written, and compares them as text."""

    impl = sa.types.String
    cache_ok = True


def _raw(value: Any, column: sa.Column[Any], dialect: str) -> ColumnElement[Any]:
    """A watermark bound as the warehouse returned it, so a comparison with it classifies
    every row as the pass that read it did."""
    return sa.literal(value, _AsStored() if dialect == "sqlite" else column.type)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _checksum_columns(shape: _Table, source: sa.FromClause) -> list[ColumnElement[Any]]:
    names = sorted({shape.inc.name, *(spec.column.name for spec in shape.specs)})
    return [source.c[name] for name in names]


def _empty(spec: _Spec) -> Counts:
    """The counts of no rows: valid is 0 where a rule applies, else not measured."""
    return Counts(valid=0 if spec.applied else None)


def _sum_checksums(values: Iterator[tuple[int, ...] | None]) -> tuple[int, ...] | None:
    out: tuple[int, ...] | None = None
    for value in values:
        if value is None:
            continue
        out = value if out is None else tuple(a + b for a, b in zip(out, value, strict=True))
    return out


def _checksum_text(
    before: tuple[str, ...] | None, added: tuple[int, ...] | None
) -> tuple[str, ...]:
    """The settled rows' checksum after adding the new settled rows' (either may be absent:
    no rows, no checksum)."""
    parts = [Decimal(v) for v in before or ()]
    extra = [Decimal(v) for v in added or ()]
    if len(parts) < len(extra):
        parts += [Decimal(0)] * (len(extra) - len(parts))
    return tuple(str(a + (extra[i] if i < len(extra) else 0)) for i, a in enumerate(parts))
