"""Alembic migrations of the metadata store, run by `mdstudio db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, select, text

MIGRATIONS_DIR = Path(__file__).parent
# Any constant of its own: held by whoever migrates the store (see `upgrade`).
_MIGRATION_LOCK_KEY = 0x6D64_6D69  # "mdmi"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration (bound to `connection` for running); no alembic.ini needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the schema, in one transaction; running it again on an up-to-date store
    changes nothing.

    On PostgreSQL the transaction first takes an advisory lock, so of two upgrades started at
    once one migrates and the other waits for its commit and then finds nothing left to do
    (instead of both creating the same tables). A migration is not bounded by the store's
    timeouts: a schema change takes as long as it takes, and so may the wait for another.
    """
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL statement_timeout = 0"))
            connection.execute(text("SET LOCAL lock_timeout = 0"))
            connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
        command.upgrade(alembic_config(connection), revision)


def head_revision() -> str | None:
    """The newest revision this code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
