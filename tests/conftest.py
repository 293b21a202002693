"""Fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from MDSTUDIO_TEST_POSTGRES_URL (default: the local server). When it cannot be
reached the PostgreSQL half is skipped with the reason, unless MDSTUDIO_REQUIRE_POSTGRES=1 (CI),
where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from mdstudio_core.adapters import migrations, tables, warehouse
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import create_blobs

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

# CI (`HYPOTHESIS_PROFILE=ci`, set by .ci/run) draws the same examples every run, so a red CI is
# reproducible; locally the examples vary, and a failure prints the blob to replay it.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_settings.register_profile("dev", print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def postgres_admin_url() -> str:
    return os.environ.get("MDSTUDIO_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


def _postgres_unavailable(reason: str) -> None:
    message = f"PostgreSQL unreachable at {postgres_admin_url()}: {reason}"
    if os.environ.get("MDSTUDIO_REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " (MDSTUDIO_REQUIRE_POSTGRES=1: PostgreSQL tests are mandatory)")
    pytest.skip(message + " (set MDSTUDIO_TEST_POSTGRES_URL to run them)")


class PostgresServer:
    """Creates throw-away databases on the test server."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create_database(self, prefix: str = "mdstudio_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self._admin.connect() as connection:
            for name in self.created:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._admin.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer(postgres_admin_url())
        with server._admin.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as exc:
        _postgres_unavailable(str(exc).splitlines()[0])
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """One migrated database for the session; tests truncate it before use."""
    url = postgres_server.create_database()
    engine = create_store_engine(url)
    migrations.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (migrating per test would be slow)."""
    path = tmp_path_factory.mktemp("template") / "mdstudio.db"
    engine = create_store_engine(f"sqlite:///{path}")
    migrations.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated store on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "mdstudio.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        names = ", ".join(table.name for table in tables.metadata.sorted_tables)
        connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    engine.dispose()
    return url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = create_store_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def uow(engine: Engine) -> UnitOfWork:
    """A unit of work on the test's store. Each outermost `with uow:` (a service's own, too) is
    a transaction of its own, so one serves a whole test; a `with` inside another joins it."""
    return UnitOfWork(engine)


@pytest.fixture
def tenant() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def slow_blobs_source(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The `wh` source: a PostgreSQL warehouse of blobs on which SLOW_PATTERN_BINDING's pattern
    is slow, with tier1 given one second."""
    url = postgres_server.create_database("mdstudio_wh")
    create_blobs(url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", url)
    monkeypatch.setenv("MDSTUDIO_TIER1_TIMEOUT_SECONDS", "1")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty warehouse database on each dialect, to name in `MDSTUDIO_SOURCE_<NAME>_URL`."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'source.db'}"
    else:
        yield request.getfixturevalue("postgres_server").create_database("mdstudio_wh")
    warehouse.dispose_engines()
