"""Sources and their engines (one per URL, shared by the process), and the dialect hooks: what
differs between warehouses."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from mdstudio_core.adapters.warehouse.errors import (
    InvalidPattern,
    ProfileError,
    ProfileTimeout,
    SourceUnavailable,
    UnknownSource,
)
from mdstudio_core.config import check_url, source_variable
from mdstudio_core.domain.patterns import matches


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
                f"{first_line(exc)}"
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


class TimeBudget:
    """One timeout for several statements: each runs under what those before it left, and
    none starts once it is spent."""

    def __init__(self, timeout_s: float | None) -> None:
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def left(self) -> float | None:
        """Seconds left for the next statement (None: no timeout); `ProfileTimeout` if none."""
        if self._deadline is None:
            return None
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise ProfileTimeout("no time left for the next statement")
        return remaining


def connect_to_source(engine: sa.Engine, source: str) -> sa.Connection:
    """A connection to a source's warehouse; a refused connection is `SourceUnavailable`
    naming the source, with the driver's first line and nothing of the URL."""
    try:
        return engine.connect()
    except sa.exc.DBAPIError as exc:
        raise SourceUnavailable(f"cannot connect to source {source!r}: {first_line(exc)}") from exc


def read_only_snapshot(connection: Connection) -> Connection:
    """On PostgreSQL, a connection whose transactions are one repeatable-read snapshot, read
    only: every statement of a read sees the same rows (else a distinct count could exceed a
    non-null one), and a read never writes, whatever SQL it is given."""
    if connection.dialect.name != "postgresql":
        return connection
    return connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)


def first_line(exc: sa.exc.DBAPIError) -> str:
    """The driver's first line of a warehouse error, as a message quotes it."""
    return str(exc.orig).strip().splitlines()[0]


@contextlib.contextmanager
def failures_named(what: str, timeout_s: float | None, advice: str = "") -> Iterator[None]:
    """An overrun or a warehouse error of a read, raised again naming `what` ran (`the
    profile of t`): the timeout that cancelled it, with `advice` after, or the driver's line."""
    try:
        yield
    except ProfileTimeout as exc:
        raise ProfileTimeout(
            f"{what} exceeded the statement timeout of {timeout_s:g} s and was cancelled{advice}"
        ) from exc
    except sa.exc.DBAPIError as exc:
        raise ProfileError(f"warehouse rejected {what}: {first_line(exc)}") from exc
