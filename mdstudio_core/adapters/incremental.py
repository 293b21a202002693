"""The SQL of a profile of a table whose binding declares `binding.incremental`: a full pass, or
an incremental one that reads only the rows at or above the watermark and merges them into the
table's state (`domain.incremental` says what is kept and why the merge is exact).

One pass, in one read-only repeatable-read transaction (one snapshot), runs:

1. *watermark*: the largest incremental value now (an index on the column answers it at once);
2. *safety net* (incremental only): the count, min and max of the incremental values of the
   settled rows (read from that index), which must equal the state's; on PostgreSQL the table's
   change counters (`pg_stat_user_tables`: rows updated or deleted, read before the snapshot)
   and its file (a TRUNCATE or rewrite replaces it) must be unchanged; where those counters are
   missing (SQLite, views, `track_counts` off) a checksum of the settled rows' bound columns
   must be. Any difference makes the pass full, saying why;
3. *row pass*: one aggregate (parallel on PostgreSQL) with, per part (the new rows below the
   new watermark, the new frontier at it, and for a daily table the settled rows of the
   watermark's day, read again) and per day where the binding is daily: row count, non-null,
   valid, min and max of every bound column;
4. *distinct* of each column declared `unique` (others need none: uniqueness is the only
   dimension that reads it): the new values, and how many already occur among the settled
   rows, found by a probe that uses an index on the column when there is one, else a scan of
   the settled rows; none when the new values lie outside the settled values' range;
5. *days*: distinct values per day of the `unique` columns.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.sql.elements import ColumnElement

from mdstudio_core.adapters.warehouse import (
    DATE,
    ORDERABLE,
    ColumnMetrics,
    DialectHooks,
    ProfileError,
    ProfileTimeout,
    SourceUnavailable,
    TableMetrics,
    build_specs,
    column_kind,
    column_metrics,
    hooks_for,
    incremental_column,
    render_sql,
)
from mdstudio_core.adapters.warehouse.columns import _reflect, _type_name, _unique_by_constraint
from mdstudio_core.adapters.warehouse.compiler import _ordered, _rule_condition, _Spec
from mdstudio_core.adapters.warehouse.measure import _check_rule_pattern
from mdstudio_core.domain.incremental import (
    FULL,
    INCREMENTAL,
    Counts,
    DayCounts,
    MergeError,
    Mode,
    Settled,
    TableState,
    disjoint,
    highest,
    iso,
    lowest,
    total,
)
from mdstudio_core.domain.model import ColumnRule, Incremental

PART_SETTLED, PART_NEW, PART_FRONTIER = 0, 1, 2
PART, DAY = "mdstudio_part", "mdstudio_day"
HALF = 2**31  # SQLite sums the 62-bit checksum in two halves, so a sum never overflows


def signature(rule: ColumnRule) -> str:
    """A rule set's identity in the state: its JSON (a column bound twice with different
    rules is measured, and kept, once per rule set)."""
    return rule.model_dump_json()


@dataclass(frozen=True)
class Increment:
    """One pass: the table's metrics (what a full profile would measure), how they were
    obtained, the state to keep and the days it covered."""

    metrics: TableMetrics
    mode: Mode
    full_reason: str | None
    watermark_before: Any
    watermark_after: Any
    rows_read: int
    probes: dict[str, str]
    state: TableState
    days: list[DayCounts]
    # The statements as run, by name (for `bench/incremental.py` to EXPLAIN them).
    statements: list[tuple[str, sa.Executable]] = field(default_factory=list)

    @property
    def window(self) -> tuple[str | None, str | None]:
        return iso(self.watermark_before), iso(self.watermark_after)


@dataclass
class _Group:
    """One (part, day) group of the row pass."""

    rows: int = 0
    inc_min: Any = None
    inc_max: Any = None
    checksum: tuple[int, ...] | None = None
    counts: dict[int, Counts] = field(default_factory=dict)


class _Runner:
    """Runs the pass's statements under the timeout, keeping each as evidence."""

    def __init__(self, connection: Connection, hooks: DialectHooks, timeout_s: float | None):
        self.connection = connection
        self.hooks = hooks
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.statements: list[tuple[str, sa.Executable]] = []
        # What the statements read, counted by construction: whole-table scans, reads of the
        # incremental range, and rows found through an index.
        self.scans = 0
        self.ranges = 0
        self.found = 0

    def rows_read(self, row_count: int, range_rows: int) -> int:
        return self.scans * row_count + self.ranges * range_rows + self.found

    def budget(self) -> float | None:
        if self.deadline is None:
            return None
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ProfileTimeout("no time left for the next statement")
        return remaining

    def rows(
        self,
        name: str,
        statement: sa.Executable,
        reads: str | None,
        planner: Mapping[str, str] | None = None,
    ) -> list[RowMapping]:
        """Run `statement`; `reads`: `scan` (the whole table), `range` (the incremental range)
        or None (an index alone answers it). `planner`: PostgreSQL settings for this statement
        alone."""
        self.statements.append((name, statement))
        self.scans += reads == "scan"
        self.ranges += reads == "range"
        planner = planner if self.connection.dialect.name == "postgresql" else None
        with self.hooks.limits(self.connection, self.budget()):
            previous = {name: self._set(name, value) for name, value in (planner or {}).items()}
            found = list(self.connection.execute(statement).mappings())
            for setting, value in previous.items():
                self._set(setting, value)
            return found

    def _set(self, setting: str, value: str) -> str:
        """Set a planner setting for the rest of the transaction; returns the one it had."""
        before = self.connection.execute(sa.select(sa.func.current_setting(setting))).scalar_one()
        self.connection.execute(sa.select(sa.func.set_config(setting, value, True)))
        return str(before)

    def evidence(self, engine: Engine) -> tuple[str, dict[str, dict[str, Any]]]:
        texts: list[str] = []
        params: dict[str, dict[str, Any]] = {}
        for name, statement in self.statements:
            text, values = render_sql(statement, engine)
            texts.append(f"-- {name}\n{text};")
            params[name] = values
        return "\n".join(texts), params


# -- what PostgreSQL knows of changes ------------------------------------------------------------


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


# -- expressions ---------------------------------------------------------------------------------


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


def _day_start(value: Any, column: sa.Column[Any], kind: str, dialect: str) -> ColumnElement[Any]:
    """The start of the day (UTC) holding `value` (decoded), as the column compares it. SQLite
    compares dates and times as text: the day itself (`YYYY-MM-DD`) sorts before every time of
    it, whatever format the rows were written in."""
    if isinstance(value, dt.datetime):
        day = (value.astimezone(dt.UTC) if value.tzinfo else value).date()
    else:
        day = value
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


# -- the pass ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """The reflected table and what the pass needs to know of it."""

    table: sa.Table
    inc: sa.Column[Any]
    inc_kind: str
    specs: list[_Spec]
    unique_constraint: frozenset[str]
    indexed: frozenset[str]
    types: dict[str, str]
    decode: Callable[[Any], Any]

    def scored_unique(self) -> dict[str, _Spec]:
        """Columns whose distinct count is needed and not given by a constraint, by name (the
        first spec on each)."""
        out: dict[str, _Spec] = {}
        for spec in self.specs:
            name = spec.column.name
            if spec.rule.unique and name not in self.unique_constraint:
                out.setdefault(name, spec)
        return out


def _leading_index_columns(connection: Connection, table: sa.Table) -> frozenset[str]:
    """Columns that lead an index (or a primary key): an equality or range on one of them is
    answered without reading the table."""
    inspector = sa.inspect(connection)
    out: set[str] = set()
    try:
        primary = inspector.get_pk_constraint(table.name, schema=table.schema)
        indexes = inspector.get_indexes(table.name, schema=table.schema)
        uniques = inspector.get_unique_constraints(table.name, schema=table.schema)
    except NotImplementedError:
        return frozenset()
    for columns in [primary.get("constrained_columns") or []]:
        if columns:
            out.add(columns[0])
    for index in indexes:
        names = index.get("column_names") or []
        using = (index.get("dialect_options") or {}).get("postgresql_using", "btree")
        if names and names[0] is not None and using in ("btree", "hash"):
            out.add(names[0])
    for unique in uniques:
        names = unique.get("column_names") or []
        if names:
            out.add(names[0])
    return frozenset(out)


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
    try:
        connection = engine.connect()
    except sa.exc.DBAPIError as exc:
        raise SourceUnavailable(
            f"cannot connect to source {source!r}: {str(exc.orig).strip().splitlines()[0]}"
        ) from exc
    try:
        with connection:
            statistics = None
            if dialect == "postgresql":
                # Read before the snapshot: a change the counters do not show yet is then one
                # the snapshot does not show either, or one the next pass will see.
                with connection.begin():
                    statistics = _pg_statistics(connection, schema, table)
                connection = connection.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
            with connection.begin():
                runner = _Runner(connection, hooks, timeout_s)
                shape = _prepare(connection, hooks, schema, table, source, rules, incremental)
                try:
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
                except ProfileTimeout as exc:
                    raise ProfileTimeout(
                        f"profile of {table} exceeded the statement timeout of {timeout_s:g} s "
                        "and was cancelled; no partial profile was kept (raise the tier's "
                        "timeout)"
                    ) from exc
    except sa.exc.DBAPIError as exc:
        raise ProfileError(
            f"warehouse rejected the profile of {table}: {str(exc.orig).strip().splitlines()[0]}"
        ) from exc


def _prepare(
    connection: Connection,
    hooks: DialectHooks,
    schema: str | None,
    table: str,
    source: str,
    rules: Sequence[ColumnRule],
    incremental: Incremental,
) -> _Table:
    reflected = _reflect(connection, schema, table, source)
    inc = incremental_column(reflected, incremental)
    for rule in rules:
        if rule.pattern is not None:
            _check_rule_pattern(connection, hooks, rule.name, rule.pattern)
    specs = build_specs(reflected, rules)
    types = {c.name: _type_name(c.type) for c in [inc, *(s.column for s in specs)]}
    processor = (
        inc.type.dialect_impl(connection.dialect).result_processor(connection.dialect, None)
        if connection.dialect.name == "sqlite"
        else None
    )
    return _Table(
        table=reflected,
        inc=inc,
        inc_kind=column_kind(inc.type),
        specs=specs,
        unique_constraint=frozenset(_unique_by_constraint(connection, reflected)),
        indexed=_leading_index_columns(connection, reflected),
        types=types,
        decode=processor or (lambda value: value),
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
    try:
        return _pass(
            runner,
            shape,
            engine,
            mode,
            full_reason,
            state,
            after,
            statistics,
            checksummed,
            incremental,
            now,
            started,
            recount,
        )
    except MergeError as exc:
        if mode == FULL:
            raise ProfileError(
                f"values of one column of {shape.table.name} cannot be ordered against each "
                f"other ({exc}); remove binding.incremental or make the column's values of "
                "one type"
            ) from exc
        return _pass(
            runner,
            shape,
            engine,
            FULL,
            f"min/max could not be merged ({exc})",
            state,
            after,
            statistics,
            checksummed,
            incremental,
            now,
            started,
            recount,
        )


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


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _checksum_columns(shape: _Table, source: sa.FromClause) -> list[ColumnElement[Any]]:
    names = sorted({shape.inc.name, *(spec.column.name for spec in shape.specs)})
    return [source.c[name] for name in names]


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
    where: ColumnElement[bool] | None = None
    if mode == INCREMENTAL:
        if before is None:
            where = inc.is_not(None)
        elif daily:
            where = inc >= _day_start(shape.decode(before), inc, shape.inc_kind, dialect)
        else:
            where = inc >= _raw(before, inc, dialect)
        if daily and recount:
            where = sa.or_(
                where,
                *(
                    sa.and_(
                        inc >= _day_start(day, inc, shape.inc_kind, dialect),
                        inc < _day_start(day + dt.timedelta(days=1), inc, shape.inc_kind, dialect),
                    )
                    for day in sorted(set(recount))
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
        statements=list(runner.statements),
    )


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
    one = sa.literal(1, sa.BigInteger())
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
            i, col = spec.index, rows.c[spec.column.name]
            items.append(sa.cast(only(sa.func.count(col)), sa.BigInteger()).label(f"nn_{i}_{p}"))
            condition = _rule_condition(spec, col, hooks)
            if condition is not None:
                items.append(
                    sa.cast(only(sa.func.count(sa.case((condition, one)))), sa.BigInteger()).label(
                        f"v_{i}_{p}"
                    )
                )
            if spec.kind in ORDERABLE:
                value = _ordered(spec, col, hooks)
                items.append(
                    sa.type_coerce(only(sa.func.min(value)), col.type).label(f"min_{i}_{p}")
                )
                items.append(
                    sa.type_coerce(only(sa.func.max(value)), col.type).label(f"max_{i}_{p}")
                )
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
                i = spec.index
                valid = row.get(f"v_{i}_{p}")
                group.counts[i] = Counts(
                    non_null=int(row[f"nn_{i}_{p}"]),
                    valid=int(valid) if valid is not None else None,
                    min=row.get(f"min_{i}_{p}"),
                    max=row.get(f"max_{i}_{p}"),
                )
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
