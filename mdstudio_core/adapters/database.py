"""Engines for the metadata store, with the per-backend settings that make transactions safe and
bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url

from mdstudio_core.domain.errors import StoreTimeout
from mdstudio_core.domain.model import StoreTimeouts

# SQLSTATEs of PostgreSQL's own timeouts: lock_timeout (lock_not_available) and
# statement_timeout (query_canceled).
_LOCK_TIMEOUT = "55P03"
_STATEMENT_TIMEOUT = "57014"


def create_store_engine(url: str, timeouts: StoreTimeouts | None = None, **kwargs: Any) -> Engine:
    """An engine for the metadata store at `url` (`Settings.store_url`), bounded by `timeouts`
    (`Settings.store_timeouts`) on PostgreSQL.

    SQLite gets WAL, a busy timeout and `BEGIN IMMEDIATE`: a write transaction takes the write
    lock when it starts, so two approvers racing serialise instead of failing half-way with
    "database is locked" when their read turns into a write.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _postgres_engine(url, timeouts, **kwargs)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)

    engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: str, timeouts: StoreTimeouts | None, **kwargs: Any) -> Engine:
    """The timeouts are options of every connection (`-c statement_timeout=...`), so no
    statement of the store can run or wait unbounded, whoever issues it; running out raises
    `StoreTimeout` naming the bound instead of a driver error."""
    if timeouts is None:
        return create_engine(url, **kwargs)
    given = make_url(url).query.get("options")
    options = (
        f"-c statement_timeout={_millis(timeouts.statement_s)} "
        f"-c lock_timeout={_millis(timeouts.lock_s)}"
    )
    connect_args = {"options": f"{given} {options}" if given else options}
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "handle_error")
    def _name_the_timeout(context: ExceptionContext) -> None:
        sqlstate = getattr(context.original_exception, "sqlstate", None)
        if sqlstate == _LOCK_TIMEOUT:
            raise StoreTimeout(
                "the metadata store waited longer than MDSTUDIO_STORE_LOCK_TIMEOUT_SECONDS "
                f"({timeouts.lock_s:g} s) for a lock another transaction holds; nothing was "
                "changed, try again"
            ) from context.sqlalchemy_exception
        if sqlstate == _STATEMENT_TIMEOUT:
            raise StoreTimeout(
                "a metadata store statement was cancelled after "
                f"MDSTUDIO_STORE_STATEMENT_TIMEOUT_SECONDS ({timeouts.statement_s:g} s); "
                "nothing was changed, try again"
            ) from context.sqlalchemy_exception

    return engine


def _millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))
