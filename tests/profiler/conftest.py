"""Fixtures for the profiler tests: a SQLite engine per test and one PostgreSQL database per
session (created with a ``prof_test_`` prefix and dropped at the end)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mdstudio_core.adapters import warehouse

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[Engine]:
    engine = warehouse.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    admin_url = sa.make_url(os.environ.get("MDSTUDIO_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("MDSTUDIO_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required (MDSTUDIO_REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(
            f"PostgreSQL at {admin_url.render_as_string(hide_password=True)} unreachable; set "
            "MDSTUDIO_TEST_POSTGRES_URL (or MDSTUDIO_REQUIRE_POSTGRES=1 to fail instead)"
        )
    name = f"prof_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = warehouse.create_engine(admin_url.set(database=name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def unique_table_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
