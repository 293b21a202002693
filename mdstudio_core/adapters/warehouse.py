"""Warehouse access for profiling: sources from the environment, dialect hooks, and the SQL
push-down that measures every bound column of a table inside the warehouse.

Why it looks like this:

* Credentials never live in the catalog. A binding names a ``source``; its SQLAlchemy URL comes
  from ``MDSTUDIO_SOURCE_<NAME>_URL``.
* Nothing user-supplied is concatenated into SQL. Tables and columns are reflected and must exist;
  SQLAlchemy quotes the identifiers; patterns, allowed values and bounds travel as bound
  parameters.
* No row is pulled into Python. A table is measured by two statements, whatever the number of
  columns or of entities bound to it, in one read-only repeatable-read transaction; each returns
  at most one row per column, so client memory is flat whatever the table size.
* The shape follows where PostgreSQL spends its time (measured by ``bench/profile.py``): CPU in
  expressions (regexes above all) and in exact distinct counts, not in the scan.

  1. *Row pass*: one parallel aggregate with the row count and, for the high-cardinality
     columns, non-null, valid (all value rules, once per row) and min/max.
  2. *Distinct pass*: a ``UNION ALL`` with one branch per column, which PostgreSQL runs side by
     side under a Parallel Append:

     - *sorted* (high cardinality, known from the planner's statistics): ``COUNT(DISTINCT)``,
       one sort; a hash table would spill when nearly every value is distinct, and grouping
       first would save no regex evaluation.
     - *grouped* (everything else): ``GROUP BY column`` (a hash aggregate), then distinct,
       non-null, valid and min/max over the groups, weighted by group size: the rules run once
       per distinct value, and the row pass never touches the column.

  A column that alone is a primary key or unique constraint needs no distinct count at all.
* A pattern runs in linear time: SQLite matches it with RE2 (`patterns.matches`), whose time
  per value the statement timeout bounds; PostgreSQL runs its own ``~`` under
  ``statement_timeout``. The pattern language (`mdstudio_core.domain.patterns`) is what both
  run with the same meaning.
* Dialect differences are confined to a small hook table (`DialectHooks`): regex matching,
  code-point text ordering, statement timeout, sampling, cardinality hints. PostgreSQL and SQLite
  are built in; DuckDB, Snowflake, BigQuery or Trino only need an entry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from mdstudio_core.config import check_url, source_variable
from mdstudio_core.domain.model import Binding, ColumnRule, Incremental
from mdstudio_core.domain.patterns import PatternError, check_pattern, matches
from mdstudio_core.domain.quality import Sample

# --------------------------------------------------------------------------------------------
# Errors: each says what to fix. A failed profile raises; nothing partial is returned.
# --------------------------------------------------------------------------------------------


class ProfileError(Exception):
    """A profile could not be computed. Nothing was measured or saved."""


class UnknownSource(ProfileError):
    """The binding names a source whose URL is not configured."""


class SourceUnavailable(ProfileError):
    """The source is configured but cannot be connected to."""


class TableNotFound(ProfileError):
    """The bound table does not exist in the source."""


class ColumnNotFound(ProfileError):
    """A bound column does not exist in the table."""


class InvalidPattern(ProfileError):
    """A pattern is not a regular expression the warehouse accepts."""


class ProfileTimeout(ProfileError):
    """The profile ran longer than the tier's statement timeout; no partial result is kept."""


class InvalidIncremental(ProfileError):
    """``binding.incremental`` names a column the table lacks, or one whose values cannot
    order the rows (or, with ``partition: day``, cannot be read as days). ``field`` is the
    binding field to fix."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def resolve_source_url(source: str, sources: Mapping[str, str]) -> str:
    """The SQLAlchemy URL of a source (`Settings.sources`, from `MDSTUDIO_SOURCE_<NAME>_URL`).
    Unknown source: an error that names the variable to set, because that is the only fix. A
    URL that does not parse is named by its variable, never shown (it may hold a password)."""
    url = sources.get(source.upper())
    if not url:
        raise UnknownSource(
            f"unknown source {source!r}: set the environment variable {source_variable(source)} "
            "to its SQLAlchemy URL (for example postgresql+psycopg://user@host:5432/db)"
        )
    try:
        return check_url(url)
    except ValueError as exc:
        raise SourceUnavailable(f"source {source!r}: {source_variable(source)} {exc}") from None


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(source: str, sources: Mapping[str, str]) -> Engine:
    """One engine (one pool) per source URL for the life of the process."""
    url = resolve_source_url(source, sources)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            try:
                engine = create_engine(url)
            except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError, ValueError):
                raise SourceUnavailable(
                    f"source {source!r}: {source_variable(source)} names no dialect or driver "
                    "installed here"
                ) from None
            _ENGINES[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached pool (tests, and processes that fork)."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def create_engine(url: str | sa.URL, **kwargs: Any) -> Engine:
    """An engine with the dialect's hooks installed (the SQLite ``REGEXP`` function, ...)."""
    engine = sa.create_engine(url, pool_pre_ping=True, **kwargs)
    hooks = hooks_for(engine.dialect.name)
    if hooks.on_connect is not None:
        event.listen(engine, "connect", hooks.on_connect)
    return engine


# --------------------------------------------------------------------------------------------
# Dialect hooks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DialectHooks:
    """What differs between warehouses. Add an entry to `DIALECT_HOOKS` for a new one.

    regex: ``(column, pattern) -> boolean SQL``; true when the pattern matches somewhere in the
        value (PostgreSQL ``~`` semantics).
    text_order: wraps a text column so min/max/distinct use code-point order (``COLLATE "C"``
        on PostgreSQL), which is also Python's order.
    limits: a context manager applying the statement timeout (seconds) on a connection inside
        its transaction; it must make an overrun raise `ProfileTimeout`.
    sample: ``(table, percent, seed) -> FROM clause`` reading about ``percent`` % of the table,
        the same rows every time it appears for one seed; None when the dialect cannot sample.
    high_cardinality: names of columns the warehouse's statistics say are mostly distinct (they
        get the sorted branch shape); empty when unknown.
    check_pattern: raises `InvalidPattern` when the warehouse's regex engine rejects a pattern.
    on_connect: DBAPI connect hook (SQLite registers ``REGEXP`` here).
    """

    regex: Callable[[ColumnElement[Any], str], ColumnElement[bool]]
    text_order: Callable[[ColumnElement[Any]], ColumnElement[Any]] = lambda column: column
    limits: Callable[[Connection, float | None], contextlib.AbstractContextManager[None]] = (
        lambda connection, timeout_s: contextlib.nullcontext()
    )
    sample: Callable[[sa.Table, float, int], sa.FromClause] | None = None
    high_cardinality: Callable[[Connection, sa.Table], set[str]] = lambda connection, table: set()
    check_pattern: Callable[[Connection, str], None] | None = None
    on_connect: Callable[[Any, Any], None] | None = None


# -- PostgreSQL ------------------------------------------------------------------------------

# Per-statement settings for the profile transaction. work_mem bounds each hash/sort node
# (backend memory stays flat and predictable); JIT compilation of a wide aggregate costs more
# than it saves on a profile.
POSTGRES_SETTINGS: dict[str, str] = {"work_mem": "32MB", "jit": "off"}


def _pg_regex(column: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    """``~`` in the ``C`` collation, where ``\\w``, ``\\d``, ``\\s`` and ``[[:alpha:]]`` are
    ASCII as in RE2, whatever the column's or the database's collation."""
    return sa.collate(column, "C").op("~", is_comparison=True)(
        sa.bindparam(None, pattern, type_=sa.Text())
    )


def _pg_text_order(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return sa.collate(column, "C")


@contextlib.contextmanager
def _pg_limits(connection: Connection, timeout_s: float | None) -> Iterator[None]:
    for name, value in POSTGRES_SETTINGS.items():
        connection.execute(sa.select(sa.func.set_config(name, value, True)))
    if timeout_s is not None:
        millis = max(1, int(timeout_s * 1000))
        connection.execute(sa.select(sa.func.set_config("statement_timeout", str(millis), True)))
    try:
        yield
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == "57014":  # query_canceled
            raise ProfileTimeout(
                "profile cancelled by the statement timeout; no partial profile was kept"
            ) from exc
        raise


def _pg_sample(table: sa.Table, percent: float, seed: int) -> sa.FromClause:
    # REPEATABLE: every UNION ALL branch must read the same sampled blocks.
    return sa.tablesample(table, sa.func.system(percent), seed=sa.literal(seed, sa.Integer()))


def _pg_high_cardinality(connection: Connection, table: sa.Table) -> set[str]:
    """Columns whose planner statistics say more than 10% of rows are distinct. Without
    statistics (never analysed) nothing is flagged and every branch is grouped, which is always
    correct, only slower on very high-cardinality columns."""
    rows = connection.execute(
        sa.text(
            "SELECT s.attname, s.n_distinct, c.reltuples"
            " FROM pg_catalog.pg_stats s"
            " JOIN pg_catalog.pg_namespace ns ON ns.nspname = s.schemaname"
            " JOIN pg_catalog.pg_class c ON c.relnamespace = ns.oid AND c.relname = s.tablename"
            " WHERE s.schemaname = coalesce(:schema, current_schema()) AND s.tablename = :table"
        ),
        {"schema": table.schema, "table": table.name},
    ).all()
    out: set[str] = set()
    for name, n_distinct, reltuples in rows:
        if n_distinct is None or not reltuples or reltuples < 100_000:
            continue
        n_distinct = float(n_distinct)
        fraction = -n_distinct if n_distinct < 0 else n_distinct / float(reltuples)
        if fraction > 0.1:
            out.add(name)
    return out


def _pg_check_pattern(connection: Connection, pattern: str) -> None:
    with connection.begin_nested():
        try:
            connection.execute(sa.select(_pg_regex(sa.literal("", sa.Text()), pattern)))
        except sa.exc.DBAPIError as exc:
            raise InvalidPattern(
                f"pattern {pattern!r} is not a regular expression PostgreSQL accepts: "
                f"{str(exc.orig).splitlines()[0]}"
            ) from exc


# -- SQLite ----------------------------------------------------------------------------------


def _sqlite_regexp(pattern: str | None, value: Any) -> int | None:
    """``value REGEXP pattern``: true when the pattern matches somewhere in the value, like
    ``~``. RE2 matches in time linear in the value: SQLite's progress handler cannot interrupt
    a Python function, so a backtracking engine here could outrun any timeout."""
    if pattern is None or value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    return 1 if matches(pattern, value) else 0


def _sqlite_checksum(*values: Any) -> int:
    """A 62-bit hash of a row's values (type and value), for the incremental safety net: a
    sum of these over the settled rows changes when any of those rows does."""
    text = repr(tuple((type(value).__name__, value) for value in values)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 2


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.create_function("regexp", 2, _sqlite_regexp, deterministic=True)
    dbapi_connection.create_function("mdstudio_checksum", -1, _sqlite_checksum, deterministic=True)


def _sqlite_regex(column: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    return column.op("REGEXP", is_comparison=True)(sa.bindparam(None, pattern, type_=sa.Text()))


@contextlib.contextmanager
def _sqlite_limits(connection: Connection, timeout_s: float | None) -> Iterator[None]:
    if timeout_s is None:
        yield
        return
    raw = connection.connection.dbapi_connection
    deadline = time.monotonic() + timeout_s
    fired = {"yes": False}

    def handler() -> int:
        if time.monotonic() > deadline:
            fired["yes"] = True
            return 1
        return 0

    raw.set_progress_handler(handler, 10_000)
    try:
        yield
    except sa.exc.OperationalError as exc:
        if fired["yes"] or (
            isinstance(exc.orig, sqlite3.OperationalError) and "interrupt" in str(exc.orig)
        ):
            raise ProfileTimeout(
                "profile interrupted by the statement timeout; no partial profile was kept"
            ) from exc
        raise
    finally:
        raw.set_progress_handler(None, 0)


def _generic_regex(column: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    return column.regexp_match(pattern)


DIALECT_HOOKS: dict[str, DialectHooks] = {
    "postgresql": DialectHooks(
        regex=_pg_regex,
        text_order=_pg_text_order,
        limits=_pg_limits,
        sample=_pg_sample,
        high_cardinality=_pg_high_cardinality,
        check_pattern=_pg_check_pattern,
    ),
    "sqlite": DialectHooks(
        regex=_sqlite_regex, limits=_sqlite_limits, on_connect=_sqlite_on_connect
    ),
}


def hooks_for(dialect_name: str) -> DialectHooks:
    """The dialect's hooks; unknown dialects get SQLAlchemy's generic ``regexp_match``."""
    return DIALECT_HOOKS.get(dialect_name, DialectHooks(regex=_generic_regex))


# --------------------------------------------------------------------------------------------
# Column kinds and rule applicability
# --------------------------------------------------------------------------------------------

TEXT, ENUM, NUMBER, BOOLEAN, DATE, DATETIME, TIME, OTHER = (
    "text",
    "enum",
    "number",
    "boolean",
    "date",
    "datetime",
    "time",
    "other",
)


def column_kind(type_: sa.types.TypeEngine[Any]) -> str:
    """Which family a reflected column type belongs to; decides which rules can apply."""
    if isinstance(type_, sa.Boolean):
        return BOOLEAN
    if isinstance(type_, sa.Enum):  # before String: an Enum is a String with fixed labels
        return ENUM
    if isinstance(type_, sa.String):
        return TEXT
    if isinstance(type_, sa.Integer | sa.Numeric | sa.Float):
        return NUMBER
    if isinstance(type_, sa.DateTime):
        return DATETIME
    if isinstance(type_, sa.Date):
        return DATE
    if isinstance(type_, sa.Time):
        return TIME
    return OTHER


ORDERABLE = {TEXT, ENUM, NUMBER, DATE, DATETIME, TIME}
# What an incremental column may be: its order is the order rows arrive in, the same in Python
# and in every warehouse (text is not: its order depends on a collation). A day needs a date.
INCREMENTAL_KINDS = {NUMBER, DATE, DATETIME}
DAY_KINDS = {DATE, DATETIME}


def incremental_column(table: sa.Table, incremental: Incremental) -> sa.Column[Any]:
    """The reflected incremental column, or `InvalidIncremental` naming the field to fix."""
    column = _find_column(table, incremental.column)
    where = f"{table.schema}.{table.name}" if table.schema else table.name
    if column is None:
        available = ", ".join(sorted(c.name for c in table.c))
        raise InvalidIncremental(
            f"column {incremental.column} not found in table {where} (columns: {available})",
            "binding.incremental.column",
        )
    kind = column_kind(column.type)
    if kind not in INCREMENTAL_KINDS:
        raise InvalidIncremental(
            f"{column.name} is {_type_name(column.type)}; an incremental column must be a number, "
            "a date or a date-time (its values must order the rows as they arrive)",
            "binding.incremental.column",
        )
    if incremental.partition == "day" and kind not in DAY_KINDS:
        raise InvalidIncremental(
            f"partition day needs a date or date-time column; {column.name} is "
            f"{_type_name(column.type)}",
            "binding.incremental.partition",
        )
    return column


def check_incremental(engine: Engine, binding: Binding) -> None:
    """Raise `InvalidIncremental` when the binding's incremental column is missing from its
    table or cannot order it. A table that does not exist (yet) is not judged here."""
    if binding.incremental is None:
        return
    with engine.connect() as connection:
        try:
            table = _reflect(connection, binding.schema_, binding.table, binding.source)
        except TableNotFound:
            return
    incremental_column(table, binding.incremental)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bound_fits(kind: str, value: Any) -> bool:
    if kind == NUMBER:
        return _is_number(value)
    if kind == DATE:
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    if kind == DATETIME:
        return isinstance(value, dt.date)
    return False


def _allowed_fits(kind: str, values: Sequence[Any]) -> bool:
    if kind in (TEXT, ENUM):
        return all(isinstance(v, str) for v in values)
    if kind == NUMBER:
        return all(_is_number(v) for v in values)
    if kind == BOOLEAN:
        return all(isinstance(v, bool) for v in values)
    return False


def applicable_rules(rule: ColumnRule, kind: str, type_name: str) -> tuple[list[str], list[str]]:
    """Split a column's declared value rules into those that apply to its type and notes on
    those that do not.

    A rule that cannot apply (``min`` on a text column, ``pattern`` on a number, text allowed
    values on an integer column) does not fail the whole profile: the steward previewing a
    binding wants to see the other columns' numbers too. The column's validity is then not
    scored at all (scoring the remaining rules would overstate it) and the profile says why.
    """
    applied: list[str] = []
    problems: list[str] = []
    for name in rule.value_rules:
        if name == "pattern":
            ok = kind == TEXT
            why = f"pattern needs a text column, {rule.name} is {type_name}"
        elif name == "allowed_values":
            ok = _allowed_fits(kind, rule.allowed_values or [])
            why = (
                f"allowed_values {rule.allowed_values!r} cannot be compared with "
                f"{rule.name} ({type_name})"
            )
        else:
            bound = getattr(rule, name)
            ok = _bound_fits(kind, bound)
            why = (
                f"{name} {bound!r} needs a numeric or date column of the same kind, "
                f"{rule.name} is {type_name}"
            )
        (applied if ok else problems).append(name if ok else f"{name}: {why}")
    return applied, problems


# --------------------------------------------------------------------------------------------
# Measuring a table
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnMetrics:
    """The raw counts of one (column, rule set) pair, as the warehouse computed them."""

    name: str
    data_type: str
    n: int
    non_null: int
    distinct: int | None
    valid: int | None
    min: Any
    max: Any
    rules: list[str]
    rules_not_applied: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TableMetrics:
    """One measurement of one table: metrics per requested column rule, in request order.
    ``sql`` holds the statements with named placeholders; ``sql_params`` their values, by
    statement (``row pass``, ``distinct pass``) and placeholder name."""

    row_count: int
    columns: list[ColumnMetrics]
    sql: str
    sql_params: dict[str, dict[str, Any]]
    sample: Sample | None
    duration_ms: int
    profiled_at: dt.datetime
    rows_read: int | None = None


@dataclass(frozen=True)
class _Spec:
    index: int
    rule: ColumnRule
    column: sa.Column[Any]
    kind: str
    type_name: str
    applied: list[str]
    problems: list[str]
    bounds: dict[str, Any]  # the applied min/max as the column compares them
    notes: list[str]  # how a bound was converted to compare


def _reflect(connection: Connection, schema: str | None, table: str, source: str) -> sa.Table:
    """The bound table, always qualified by its schema: a binding without one means the
    connection's default schema, named explicitly, so an unqualified name can never resolve
    through the search path to a catalog table (PostgreSQL searches `pg_catalog` first)."""
    inspector = sa.inspect(connection)
    if schema is None and connection.dialect.name == "postgresql":
        schema = inspector.default_schema_name
    if not inspector.has_table(table, schema=schema):
        where = f"{schema}.{table}" if schema else table
        raise TableNotFound(f"table {where} not found in source {source!r}")
    columns = inspector.get_columns(table, schema=schema)
    return sa.Table(
        table,
        sa.MetaData(),
        *[sa.Column(c["name"], c["type"]) for c in columns],
        schema=schema,
    )


def _unique_by_constraint(connection: Connection, table: sa.Table) -> set[str]:
    """Columns that alone form the primary key or a unique constraint. The warehouse enforces
    that their non-null values are distinct, so their distinct count is their non-null count and
    costs nothing. Unique indexes are ignored (they can be partial or on expressions)."""
    inspector = sa.inspect(connection)
    out: set[str] = set()
    try:
        primary = inspector.get_pk_constraint(table.name, schema=table.schema)
        uniques = inspector.get_unique_constraints(table.name, schema=table.schema)
    except NotImplementedError:
        return out
    for columns in [primary.get("constrained_columns") or []] + [
        u.get("column_names") or [] for u in uniques
    ]:
        if len(columns) == 1:
            out.add(columns[0])
    return out


def _find_column(table: sa.Table, name: str) -> sa.Column[Any] | None:
    if name in table.c:
        return table.c[name]
    matches = [c for c in table.c if c.name.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _rule_condition(
    spec: _Spec, value: ColumnElement[Any], hooks: DialectHooks
) -> ColumnElement[bool] | None:
    rule, conditions = spec.rule, []
    for name in spec.applied:
        if name == "pattern":
            assert rule.pattern is not None
            conditions.append(hooks.regex(value, rule.pattern))
        elif name == "allowed_values":
            allowed = list(rule.allowed_values or [])
            if spec.kind == ENUM:
                # A value outside the enum's labels can match nothing (and PostgreSQL would
                # reject it as enum input), so it is dropped here.
                labels = set(getattr(spec.column.type, "enums", None) or allowed)
                allowed = [v for v in allowed if v in labels]
            if allowed:
                values = [sa.literal(v, spec.column.type) for v in allowed]
                conditions.append(value.in_(values))
            else:
                conditions.append(sa.false())
        elif name == "min":
            conditions.append(value >= sa.literal(spec.bounds["min"], spec.column.type))
        elif name == "max":
            conditions.append(value <= sa.literal(spec.bounds["max"], spec.column.type))
    if not conditions:
        return None
    return sa.and_(*conditions)


def _comparable_bounds(
    rule: ColumnRule, applied: Sequence[str], column_type: sa.types.TypeEngine[Any]
) -> tuple[dict[str, Any], list[str]]:
    """The applied ``min``/``max`` as the column compares them, and notes on any conversion.

    A date-time column and a bound that disagree on having a time zone meet in UTC, explicitly,
    so that the comparison never depends on the warehouse session's time zone: a zoned bound on
    a column without zone (a PostgreSQL ``timestamp``, any SQLite date-time, stored as text) is
    compared as its UTC wall-clock time; a bound without zone (a date-time or a date, which
    means its midnight) on a zoned column (``timestamptz``) is read as UTC. Anything else is
    compared as given.
    """
    zoned_column = isinstance(column_type, sa.DateTime) and bool(column_type.timezone)
    bounds: dict[str, Any] = {}
    notes: list[str] = []
    for name in ("min", "max"):
        if name in applied:
            given = getattr(rule, name)
            bounds[name], why = _meet_in_utc(given, zoned_column)
            if why is not None:
                notes.append(
                    f"{name} {given.isoformat()} compared as {bounds[name].isoformat()} (UTC): "
                    f"{why}"
                )
    return bounds, notes


def _meet_in_utc(bound: Any, zoned_column: bool) -> tuple[Any, str | None]:
    """(the bound to compare, why it was converted or None); see `_comparable_bounds`."""
    zoned_bound = isinstance(bound, dt.datetime) and bound.tzinfo is not None
    if zoned_bound and not zoned_column:
        return bound.astimezone(dt.UTC).replace(tzinfo=None), "the column has no time zone"
    if zoned_column and not zoned_bound:
        if not isinstance(bound, dt.datetime):
            bound = dt.datetime.combine(bound, dt.time())
        return bound.replace(tzinfo=dt.UTC), "the bound has no time zone, the column has one"
    return bound, None


@dataclass(frozen=True)
class ProfileStatements:
    """The two statements that measure a table, run in one repeatable-read, read-only
    transaction (so both see the same rows).

    row_pass: ONE aggregate over the table: the row count and, for each column spec not
        measured by a grouped branch, the non-null count, the valid count (every applicable
        value rule, evaluated once per row) and min/max. Parallel-safe: PostgreSQL spreads the
        scan and the regexes over its workers.
    distinct_pass: one ``UNION ALL`` branch per column, run side by side under a Parallel
        Append on PostgreSQL:
        - *sorted* branch (high-cardinality columns, from planner statistics):
          ``COUNT(DISTINCT column)``, one sort; deduplicating first would save nothing.
        - *grouped* branch (all other columns): ``GROUP BY column`` (hash aggregate), then
          distinct, non-null, valid and min/max over the groups, weighted by group size, so
          the value rules (regexes above all) run once per distinct value instead of once
          per row, and the row pass does not touch the column at all.
        None when nothing needs it (every column unique by constraint).
    grouped: indexes of the specs measured entirely by the distinct pass.
    sorted_columns: columns with a ``COUNT(DISTINCT)`` branch, keyed by the index of the first
        spec on that column.
    unique_by_constraint: bound columns whose distinct count is their non-null count because a
        single-column primary key or unique constraint guarantees it.
    """

    row_pass: sa.Select[Any]
    distinct_pass: sa.Select[Any] | sa.CompoundSelect | None
    specs: list[_Spec]
    grouped: set[int] = field(default_factory=set)
    sorted_columns: dict[str, int] = field(default_factory=dict)
    unique_by_constraint: list[str] = field(default_factory=list)


def _ordered(spec: _Spec, value: ColumnElement[Any], hooks: DialectHooks) -> ColumnElement[Any]:
    return hooks.text_order(value) if spec.kind == TEXT else value


def _row_pass(
    source: sa.FromClause, specs: Sequence[_Spec], hooks: DialectHooks, grouped: set[int]
) -> sa.Select[Any]:
    one = sa.literal(1, sa.BigInteger())
    items: list[ColumnElement[Any]] = [sa.cast(sa.func.count(), sa.BigInteger()).label("n")]
    for spec in specs:
        if spec.index in grouped:
            continue
        col = source.c[spec.column.name]
        i = spec.index
        items.append(sa.cast(sa.func.count(col), sa.BigInteger()).label(f"nn_{i}"))
        condition = _rule_condition(spec, col, hooks)
        if condition is not None:
            items.append(
                sa.cast(sa.func.count(sa.case((condition, one))), sa.BigInteger()).label(f"v_{i}")
            )
        if spec.kind in ORDERABLE:
            ordered = _ordered(spec, col, hooks)
            items.append(sa.type_coerce(sa.func.min(ordered), col.type).label(f"min_{i}"))
            items.append(sa.type_coerce(sa.func.max(ordered), col.type).label(f"max_{i}"))
    return sa.select(*items).select_from(source)


def _slots(
    specs: Sequence[_Spec], grouped: set[int], own: int | None, low: Any = None, high: Any = None
) -> list[ColumnElement[Any]]:
    """min/max columns of every grouped orderable spec: the branch's own values, typed NULLs
    elsewhere, so that every UNION ALL branch has the same row type."""
    slots: list[ColumnElement[Any]] = []
    for other in specs:
        if other.index not in grouped or other.kind not in ORDERABLE:
            continue
        j, type_ = other.index, other.column.type
        if other.index == own:
            slots += [
                sa.type_coerce(low, type_).label(f"min_{j}"),
                sa.type_coerce(high, type_).label(f"max_{j}"),
            ]
        else:
            slots += [
                sa.cast(sa.null(), type_).label(f"min_{j}"),
                sa.cast(sa.null(), type_).label(f"max_{j}"),
            ]
    return slots


def _grouped_branch(
    spec: _Spec,
    source: sa.FromClause,
    specs: Sequence[_Spec],
    grouped: set[int],
    hooks: DialectHooks,
) -> sa.Select[Any]:
    col = source.c[spec.column.name]
    value = _ordered(spec, col, hooks)
    groups = (
        sa.select(value.label("v"), sa.func.count().label("k"))
        .select_from(source)
        .where(col.is_not(None))
        .group_by(value)
        .subquery(f"g{spec.index}")
    )
    condition = _rule_condition(spec, groups.c.v, hooks)
    valid: ColumnElement[Any] = (
        sa.func.coalesce(sa.func.sum(sa.case((condition, groups.c.k))), 0)
        if condition is not None
        else sa.null()
    )
    low = high = None
    if spec.kind in ORDERABLE:
        low, high = sa.func.min(groups.c.v), sa.func.max(groups.c.v)
    return sa.select(
        sa.literal(spec.index, sa.Integer()).label("key"),
        sa.cast(sa.func.count(), sa.BigInteger()).label("d"),
        sa.cast(sa.func.coalesce(sa.func.sum(groups.c.k), 0), sa.BigInteger()).label("nn"),
        sa.cast(valid, sa.BigInteger()).label("v"),
        *_slots(specs, grouped, spec.index, low, high),
    ).select_from(groups)


def _sorted_branch(
    spec: _Spec,
    source: sa.FromClause,
    specs: Sequence[_Spec],
    grouped: set[int],
    hooks: DialectHooks,
) -> sa.Select[Any]:
    value = _ordered(spec, source.c[spec.column.name], hooks)
    return sa.select(
        sa.literal(spec.index, sa.Integer()).label("key"),
        sa.cast(sa.func.count(sa.distinct(value)), sa.BigInteger()).label("d"),
        sa.cast(sa.null(), sa.BigInteger()).label("nn"),
        sa.cast(sa.null(), sa.BigInteger()).label("v"),
        *_slots(specs, grouped, None),
    ).select_from(source)


def build_specs(table: sa.Table, rules: Sequence[ColumnRule]) -> list[_Spec]:
    """One spec per rule: its column (`ColumnNotFound` naming the missing ones), kind, and
    the rules that apply to its type."""
    specs: list[_Spec] = []
    missing: list[str] = []
    for index, rule in enumerate(rules):
        column = _find_column(table, rule.name)
        if column is None:
            missing.append(rule.name)
            continue
        kind = column_kind(column.type)
        type_name = _type_name(column.type)
        applied, problems = applicable_rules(rule, kind, type_name)
        if problems:  # validity is not scored at all; do not spend warehouse time on it
            applied = []
        bounds, notes = _comparable_bounds(rule, applied, column.type)
        specs.append(_Spec(index, rule, column, kind, type_name, applied, problems, bounds, notes))
    if missing:
        where = f"{table.schema}.{table.name}" if table.schema else table.name
        available = ", ".join(sorted(c.name for c in table.c))
        raise ColumnNotFound(
            f"column {', '.join(missing)} not found in table {where} (columns: {available})"
        )
    return specs


def column_metrics(
    spec: _Spec,
    row_count: int,
    non_null: int,
    distinct: int | None,
    valid: int | None,
    low: Any,
    high: Any,
) -> ColumnMetrics:
    """A spec's measured counts, with the notes on what could not be measured or applied."""
    notes = [f"validity rule not applied: {p}" for p in spec.problems] + spec.notes
    if spec.kind not in ORDERABLE:
        notes.append(f"min/max not measured: {spec.type_name} has no order")
    return ColumnMetrics(
        name=spec.rule.name,
        data_type=spec.type_name,
        n=row_count,
        non_null=non_null,
        distinct=distinct,
        valid=valid,
        min=low,
        max=high,
        rules=spec.applied,
        rules_not_applied=[p.split(":", 1)[0] for p in spec.problems],
        notes=notes,
    )


def build_profile_statements(
    table: sa.Table,
    rules: Sequence[ColumnRule],
    dialect_name: str,
    *,
    sample_percent: float | None = None,
    sample_seed: int = 0,
    high_cardinality: set[str] | frozenset[str] = frozenset(),
    unique_by_constraint: set[str] | frozenset[str] = frozenset(),
) -> ProfileStatements:
    """Build the statements that measure ``rules`` on ``table`` (reflected). Exposed for the
    benchmark and for tests that inspect the SQL. Columns in ``high_cardinality`` get the sorted
    shape; columns in ``unique_by_constraint`` get no distinct branch at all."""
    hooks = hooks_for(dialect_name)
    specs = build_specs(table, rules)
    source: sa.FromClause = table
    if sample_percent is not None:
        if hooks.sample is None:
            raise ProfileError(f"sampling is not supported on {dialect_name}; profile in full")
        if not 0 < sample_percent <= 100:
            raise ProfileError(f"sample percent must be in (0, 100], got {sample_percent}")
        source = hooks.sample(table, sample_percent, sample_seed)
    unique = {s.column.name for s in specs} & set(unique_by_constraint)
    grouped = {
        s.index
        for s in specs
        if s.column.name not in high_cardinality and s.column.name not in unique
    }
    sorted_columns: dict[str, int] = {}
    for spec in specs:
        if spec.index not in grouped and spec.column.name not in unique:
            sorted_columns.setdefault(spec.column.name, spec.index)
    branches = [
        _grouped_branch(spec, source, specs, grouped, hooks)
        if spec.index in grouped
        else _sorted_branch(spec, source, specs, grouped, hooks)
        for spec in specs
        if spec.index in grouped or sorted_columns.get(spec.column.name) == spec.index
    ]
    distinct_pass: sa.Select[Any] | sa.CompoundSelect | None = (
        None if not branches else branches[0] if len(branches) == 1 else sa.union_all(*branches)
    )
    return ProfileStatements(
        row_pass=_row_pass(source, specs, hooks, grouped),
        distinct_pass=distinct_pass,
        specs=specs,
        grouped=grouped,
        sorted_columns=sorted_columns,
        unique_by_constraint=sorted(unique),
    )


def _type_name(type_: sa.types.TypeEngine[Any]) -> str:
    try:
        return str(type_).lower()
    except Exception:  # some reflected types cannot render without a dialect
        return type(type_).__name__.lower()


def render_sql(
    statement: sa.sql.ClauseElement, engine_or_dialect: Engine | Any
) -> tuple[str, dict[str, Any]]:
    """The statement as the warehouse ran it, with named placeholders (``:param_1``; the driver
    itself gets its own style, ``?`` or ``%(param_1)s``), and the values by placeholder name.
    Recorded in the profile as evidence, never executed from this text. The values stay out of
    the text: they are the steward's (up to 1000 allowed values, any characters), and apart
    they are data, never SQL or Markdown to whoever reads the statement."""
    dialect = getattr(engine_or_dialect, "dialect", engine_or_dialect)
    compiled = statement.compile(dialect=type(dialect)(paramstyle="named"))
    return str(compiled), dict(compiled.params)


def _check_rule_pattern(
    connection: Connection, hooks: DialectHooks, column: str, pattern: str
) -> None:
    """A pattern outside the accepted language (one stored before it was narrowed) or one the
    warehouse rejects fails the profile, naming its column."""
    try:
        check_pattern(pattern)
        if hooks.check_pattern is not None:
            hooks.check_pattern(connection, pattern)
    except PatternError as exc:
        raise InvalidPattern(f"column {column}: pattern {pattern!r} is refused: {exc}") from exc
    except InvalidPattern as exc:
        raise InvalidPattern(f"column {column}: {exc}") from exc


def _evidence(statements: ProfileStatements, engine: Engine) -> tuple[str, dict[str, Any]]:
    """The statements' text under ``-- row pass`` / ``-- distinct pass`` headings, and their
    parameter values under the same names."""
    passes = {"row pass": statements.row_pass, "distinct pass": statements.distinct_pass}
    texts: list[str] = []
    params: dict[str, dict[str, Any]] = {}
    for name, statement in passes.items():
        if statement is not None:
            text, params[name] = render_sql(statement, engine)
            texts.append(f"-- {name}\n{text};")
    return "\n".join(texts), params


def measure_table(
    engine: Engine,
    table: str,
    rules: Sequence[ColumnRule],
    *,
    schema: str | None = None,
    source: str = "warehouse",
    timeout_s: float | None = 600.0,
    sample_percent: float | None = None,
) -> TableMetrics:
    """Measure ``rules`` (bound columns, possibly the same column twice with different rules)
    on one table in one statement, inside one read-only transaction, under the timeout.

    Raises a `ProfileError` subclass for anything that prevents a complete, correct measurement.
    """
    hooks = hooks_for(engine.dialect.name)
    started = time.perf_counter()
    profiled_at = dt.datetime.now(dt.UTC)
    try:
        connection = engine.connect()
    except sa.exc.DBAPIError as exc:
        raise SourceUnavailable(
            f"cannot connect to source {source!r}: {str(exc.orig).strip().splitlines()[0]}"
        ) from exc
    if engine.dialect.name == "postgresql":
        # Both passes must see the same snapshot, or distinct could exceed non-null.
        # Read only: a profile never writes, whatever SQL it is given.
        connection = connection.execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
    try:
        with connection, connection.begin():
            reflected = _reflect(connection, schema, table, source)
            for rule in rules:
                if rule.pattern is not None:
                    _check_rule_pattern(connection, hooks, rule.name, rule.pattern)
            high = hooks.high_cardinality(connection, reflected)
            unique = _unique_by_constraint(connection, reflected)
            seed = random.randrange(1, 2**31 - 1)
            statements = build_profile_statements(
                reflected,
                rules,
                engine.dialect.name,
                sample_percent=sample_percent,
                sample_seed=seed,
                high_cardinality=high,
                unique_by_constraint=unique,
            )
            sql, sql_params = _evidence(statements, engine)
            if statements.unique_by_constraint:
                sql += (
                    "\n-- distinct = non-null (single-column primary key or unique constraint): "
                    + ", ".join(statements.unique_by_constraint)
                )
            # The timeout bounds the whole profile: the distinct pass gets what the row pass left.
            deadline = None if timeout_s is None else time.monotonic() + timeout_s

            def budget() -> float | None:
                if deadline is None:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProfileTimeout("no time left for the next statement")
                return remaining

            try:
                with hooks.limits(connection, budget()):
                    totals = connection.execute(statements.row_pass).mappings().one()
                branches: dict[int, Any] = {}
                if statements.distinct_pass is not None:
                    with hooks.limits(connection, budget()):
                        branches = {
                            row["key"]: row
                            for row in connection.execute(statements.distinct_pass).mappings()
                        }
            except ProfileTimeout as exc:
                raise ProfileTimeout(
                    f"profile of {table} exceeded the statement timeout of {timeout_s:g} s and was "
                    "cancelled; no partial profile was kept (raise the tier's timeout or enable "
                    "sampling)"
                ) from exc
            except sa.exc.DBAPIError as exc:
                raise ProfileError(
                    f"warehouse rejected the profile of {table}: "
                    f"{str(exc.orig).strip().splitlines()[0]}"
                ) from exc
    except sa.exc.DBAPIError as exc:  # reflection and statistics, outside the two passes
        raise ProfileError(
            f"warehouse error while preparing the profile of {table}: "
            f"{str(exc.orig).strip().splitlines()[0]}"
        ) from exc
    row_count = int(totals["n"])
    columns: list[ColumnMetrics] = []
    for spec in statements.specs:
        i = spec.index
        if i in statements.grouped:
            row = branches[i]
            non_null, distinct = int(row["nn"]), int(row["d"])
            valid = None if row["v"] is None else int(row["v"])
            low, high = row.get(f"min_{i}"), row.get(f"max_{i}")
        else:
            non_null = int(totals[f"nn_{i}"])
            distinct = (
                non_null
                if spec.column.name in statements.unique_by_constraint
                else int(branches[statements.sorted_columns[spec.column.name]]["d"])
            )
            valid = int(totals[f"v_{i}"]) if f"v_{i}" in totals else None
            low, high = totals.get(f"min_{i}"), totals.get(f"max_{i}")
        columns.append(column_metrics(spec, row_count, non_null, distinct, valid, low, high))
    sample = (
        Sample(
            method=f"TABLESAMPLE SYSTEM REPEATABLE ({seed})", percent=sample_percent, rows=row_count
        )
        if sample_percent is not None
        else None
    )
    # Each statement, and each branch of the distinct pass, reads every row.
    scans = 1 + len(statements.grouped) + len(statements.sorted_columns)
    return TableMetrics(
        row_count=row_count,
        columns=columns,
        sql=sql,
        sql_params=sql_params,
        sample=sample,
        duration_ms=int((time.perf_counter() - started) * 1000),
        profiled_at=profiled_at,
        rows_read=row_count * scans,
    )
