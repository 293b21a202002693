"""One profile of an incrementally bound table: the transaction, the choice between a full and
an incremental pass, and the pass itself, merged into the table's state."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from mdstudio_core.adapters.incremental.expressions import (
    DAY,
    PART,
    PART_FRONTIER,
    PART_NEW,
    PART_SETTLED,
    _AsStored,
    _checksum_text,
    _day,
    _day_start,
    _empty,
    _raw,
    _sum_checksums,
    _utc_day,
)
from mdstudio_core.adapters.incremental.passes import _days, _distinct, _row_pass
from mdstudio_core.adapters.incremental.probes import _pg_statistics, _safety_net, _state_reason
from mdstudio_core.adapters.incremental.shape import (
    Increment,
    _Group,
    _prepare,
    _Runner,
    _Table,
    signature,
)
from mdstudio_core.adapters.warehouse import (
    ORDERABLE,
    ColumnMetrics,
    ProfileError,
    TableMetrics,
    column_metrics,
    hooks_for,
)
from mdstudio_core.adapters.warehouse.engines import (
    connect_to_source,
    failures_named,
    read_only_snapshot,
)
from mdstudio_core.domain.incremental import (
    FULL,
    INCREMENTAL,
    Counts,
    DaysRead,
    MergeError,
    Mode,
    Settled,
    TableState,
    disjoint,
    highest,
    lowest,
    total,
)
from mdstudio_core.domain.model import ColumnRule, Incremental


def measure_incremental(
    engine: Engine,
    table: str,
    rules: Sequence[ColumnRule],
    incremental: Incremental,
    *,
    schema: str | None = None,
    source: str = "warehouse",
    timeout_s: float | None = 600.0,
    state: TableState | None = None,
    full_reason: str | None = None,
    now: dt.datetime | None = None,
    recount: Sequence[dt.date] = (),
) -> Increment:
    """Profile `rules` on an incrementally bound table: incrementally from `state` when it is
    given and the safety net holds, else in full (`full_reason` says why). A daily table's
    `recount` days are read again whole (a backfill of chosen days). Raises a
    `warehouse.ProfileError` subclass for anything that prevents an exact result."""
    now = now or dt.datetime.now(dt.UTC)
    dialect = engine.dialect.name
    hooks = hooks_for(dialect)
    started = time.perf_counter()
    if state is None and full_reason is None:
        full_reason = "first profile of this table with binding.incremental"
    connection = connect_to_source(engine, source)
    advice = "; no partial profile was kept (raise the tier's timeout)"
    with failures_named(f"the profile of {table}", timeout_s, advice), connection:
        statistics = None
        if dialect == "postgresql":
            # Read before the snapshot: a change the counters do not show yet is then one
            # the snapshot does not show either, or one the next pass will see.
            with connection.begin():
                statistics = _pg_statistics(connection, schema, table)
        connection = read_only_snapshot(connection)
        with connection.begin():
            runner = _Runner(connection, hooks, timeout_s)
            shape = _prepare(connection, hooks, schema, table, source, rules, incremental)
            return _measure(
                runner,
                shape,
                engine,
                statistics,
                state,
                full_reason,
                incremental,
                now,
                started,
                recount,
            )


def _measure(
    runner: _Runner,
    shape: _Table,
    engine: Engine,
    statistics: dict[str, Any] | None,
    state: TableState | None,
    full_reason: str | None,
    incremental: Incremental,
    now: dt.datetime,
    started: float,
    recount: Sequence[dt.date],
) -> Increment:
    dialect = engine.dialect.name
    inc = shape.inc
    indexed = inc.name in shape.indexed
    raw_max = sa.type_coerce(sa.func.max(inc), _AsStored() if dialect == "sqlite" else inc.type)
    [watermark] = runner.rows(
        "watermark", sa.select(raw_max.label("w")), None if indexed else "scan"
    )
    after = watermark["w"]
    checksummed = dialect == "sqlite" or (dialect == "postgresql" and statistics is None)
    if dialect not in ("sqlite", "postgresql") and full_reason is None:
        full_reason = f"{dialect} offers no cheap check that earlier rows are unchanged"
    if full_reason is None:
        assert state is not None
        full_reason = _state_reason(state, shape, after, statistics, checksummed)
    if full_reason is None:
        assert state is not None
        full_reason = _safety_net(runner, shape, state, dialect, checksummed)
    mode: Mode = FULL if full_reason is not None else INCREMENTAL

    def run(pass_mode: Mode, reason: str | None) -> Increment:
        return _pass(
            runner,
            shape,
            engine,
            pass_mode,
            reason,
            state,
            after,
            statistics,
            checksummed,
            incremental,
            now,
            started,
            recount,
        )

    try:
        return run(mode, full_reason)
    except MergeError as exc:
        if mode == FULL:
            raise ProfileError(
                f"values of one column of {shape.table.name} cannot be ordered against each "
                f"other ({exc}); remove binding.incremental or make the column's values of "
                "one type"
            ) from exc
        return run(FULL, f"min/max could not be merged ({exc})")


def _pass(
    runner: _Runner,
    shape: _Table,
    engine: Engine,
    mode: Mode,
    full_reason: str | None,
    state: TableState | None,
    after: Any,
    statistics: dict[str, Any] | None,
    checksummed: bool,
    incremental: Incremental,
    now: dt.datetime,
    started: float,
    recount: Sequence[dt.date],
) -> Increment:
    dialect = engine.dialect.name
    table, inc = shape.table, shape.inc
    daily = incremental.partition == "day"
    before = state.watermark if mode == INCREMENTAL and state is not None else None
    previous = state if mode == INCREMENTAL else None

    # Which rows, and in which part. A full pass reads everything; an incremental one the
    # rows at or above the last watermark (from the start of its day, for days).
    after_value = _raw(after, inc, dialect) if after is not None else None
    days_read = (
        DaysRead(since=_utc_day(shape.decode(before)), recounted=frozenset(recount))
        if daily and before is not None
        else DaysRead()
    )
    where: ColumnElement[bool] | None = None
    if mode == INCREMENTAL:
        if before is None:
            where = inc.is_not(None)
        elif days_read.since is not None:
            where = inc >= _day_start(days_read.since, inc, shape.inc_kind, dialect)
        else:
            where = inc >= _raw(before, inc, dialect)
        if days_read.recounted:
            where = sa.or_(
                where,
                *(
                    sa.and_(
                        inc >= _day_start(day, inc, shape.inc_kind, dialect),
                        inc < _day_start(day + dt.timedelta(days=1), inc, shape.inc_kind, dialect),
                    )
                    for day in sorted(days_read.recounted)
                ),
            )
    whens: list[tuple[ColumnElement[bool], int]] = []
    if after_value is not None:
        whens.append((inc >= after_value, PART_FRONTIER))
    if mode == INCREMENTAL and before is not None:
        whens.append((inc >= _raw(before, inc, dialect), PART_NEW))
        part: ColumnElement[Any] = sa.case(*whens, else_=PART_SETTLED)
    else:
        part = sa.case(*whens, else_=PART_NEW) if whens else sa.literal(PART_NEW)
    selected: list[ColumnElement[Any]] = [*table.c, part.label(PART)]
    if daily:
        selected.append(_day(inc, shape.inc_kind, dialect).label(DAY))
    query = sa.select(*selected)
    if where is not None:
        query = query.where(where)
    rows = query.subquery("rows")

    def parts(column: ColumnElement[Any]) -> dict[int, ColumnElement[bool]]:
        """Each part as a condition on the incremental value itself (the part column would be
        computed again in every aggregate's filter)."""
        front = column >= _raw(after, inc, dialect) if after is not None else sa.false()
        if mode == INCREMENTAL and before is not None:
            new = column >= _raw(before, inc, dialect)
            if after is not None:
                new = sa.and_(new, column < _raw(after, inc, dialect))
            found = {PART_NEW: new, PART_FRONTIER: front}
            return found | ({PART_SETTLED: column < _raw(before, inc, dialect)} if daily else {})
        if after is None:
            return {PART_NEW: sa.true(), PART_FRONTIER: front}
        return {
            PART_NEW: sa.or_(column < _raw(after, inc, dialect), column.is_(None)),
            PART_FRONTIER: front,
        }

    unique = shape.scored_unique()
    reads = "scan" if mode == FULL else "range"
    groups = _row_pass(runner, shape, rows, parts, dialect, checksummed, daily, reads)

    def part_total(wanted: int) -> tuple[int, dict[int, Counts], _Group]:
        chosen = [g for (p, _), g in groups.items() if p == wanted]
        merged = _Group(
            rows=sum(g.rows for g in chosen),
            inc_min=lowest(g.inc_min for g in chosen),
            inc_max=highest(g.inc_max for g in chosen),
            checksum=_sum_checksums(g.checksum for g in chosen),
        )
        counts = {
            spec.index: total([g.counts.get(spec.index, _empty(spec)) for g in chosen])
            for spec in shape.specs
        }
        return merged.rows, counts, merged

    new_rows, new_counts, new_group = part_total(PART_NEW)
    front_rows, front_counts, _front = part_total(PART_FRONTIER)

    # Distinct values of the columns declared unique: new ones, and how many of them the
    # settled rows already hold.
    probes: dict[str, str] = {}
    distinct_new: dict[str, tuple[int, int]] = {}
    for name, spec in unique.items():
        method = "full"
        if previous is not None:
            settled = previous.columns[signature(spec.rule)]
            low = lowest((new_counts[spec.index].min, front_counts[spec.index].min))
            high = highest((new_counts[spec.index].max, front_counts[spec.index].max))
            if spec.kind in ORDERABLE and disjoint(low, high, settled.min, settled.max):
                method = "range"
            else:
                method = "index" if name in shape.indexed else "scan"
            probes[name] = method
        distinct_new[name] = _distinct(runner, shape, spec, rows, method, before, reads, dialect)
    for name in shape.unique_constraint & {s.column.name for s in shape.specs if s.rule.unique}:
        if previous is not None:
            probes[name] = "constraint"

    settled_before = previous.settled if previous is not None else Settled()
    settled_rows = settled_before.rows + new_rows
    settled_counts: dict[int, Counts] = {}
    profile_counts: dict[int, Counts] = {}
    for spec in shape.specs:
        base = previous.columns[signature(spec.rule)] if previous is not None else _empty(spec)
        kept = base.plus(new_counts[spec.index])
        seen = kept.plus(front_counts[spec.index])
        name = spec.column.name
        if name in unique:
            added, frontier_added = distinct_new[name]
            kept = replace(kept, distinct=(base.distinct or 0) + added)
            seen = replace(seen, distinct=kept.distinct + frontier_added)
        elif name in shape.unique_constraint:
            kept = replace(kept, distinct=kept.non_null)
            seen = replace(seen, distinct=seen.non_null)
        else:
            kept, seen = replace(kept, distinct=None), replace(seen, distinct=None)
        settled_counts[spec.index] = kept
        profile_counts[spec.index] = seen

    row_count = settled_rows + front_rows
    new_settled = Settled(
        rows=settled_rows,
        inc_min=lowest((settled_before.inc_min, new_group.inc_min)),
        inc_max=highest((settled_before.inc_max, new_group.inc_max)),
        checksum=_checksum_text(settled_before.checksum, new_group.checksum)
        if checksummed
        else None,
        statistics=None if checksummed else statistics,
    )
    new_state = TableState(
        incremental=incremental.model_dump(mode="json", exclude_none=True),
        specs=tuple(sorted({signature(spec.rule) for spec in shape.specs})),
        types=shape.types,
        watermark=after,
        settled=new_settled,
        columns={signature(spec.rule): settled_counts[spec.index] for spec in shape.specs},
        last_full_at=now if mode == FULL or previous is None else previous.last_full_at,
    )

    days = _days(runner, shape, rows, groups, unique, reads) if daily else []

    columns: list[ColumnMetrics] = []
    for spec in shape.specs:
        counts = profile_counts[spec.index]
        low, high = (counts.min, counts.max) if spec.kind in ORDERABLE else (None, None)
        columns.append(
            column_metrics(
                spec, row_count, counts.non_null, counts.distinct, counts.valid, low, high
            )
        )
    sql, sql_params = runner.evidence(engine)
    return Increment(
        metrics=TableMetrics(
            row_count=row_count,
            columns=columns,
            sql=sql,
            sql_params=sql_params,
            sample=None,
            duration_ms=int((time.perf_counter() - started) * 1000),
            profiled_at=now,
        ),
        mode=mode,
        full_reason=full_reason,
        watermark_before=shape.decode(before) if before is not None else None,
        watermark_after=shape.decode(after) if after is not None else None,
        rows_read=runner.rows_read(
            row_count,
            sum(g.rows for g in groups.values()) if inc.name in shape.indexed else row_count,
        ),
        probes=probes,
        state=new_state,
        days=days,
        days_read=days_read,
        statements=list(runner.statements),
    )
