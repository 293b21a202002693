"""`mdstudio db upgrade` from empty, twice, on both backends; the result matches the tables. Two
upgrades at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mdstudio_core.adapters import migrations, tables
from mdstudio_core.adapters.database import create_store_engine
from tests.cli_helpers import run_cli

APPROVAL_COLUMNS = {
    "id",
    "tenant_id",
    "entity_type",
    "entity_id",
    "entity_key",
    "tier",
    "lane",
    "payload",
    "current_state",
    "status",
    "decision_reason",
    "requested_by",
    "decided_by",
    "requested_at",
    "decided_at",
    "required_role",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("postgres_server").create_database("mdstudio_migrate")


def test_upgrade_from_empty_twice_via_cli(empty_url, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", empty_url)
    for _ in range(2):
        result = run_cli(["db", "upgrade", "--json"])
        assert result.exit_code == 0, result.stderr
        assert result.json["revision"] == migrations.head_revision()
    engine = create_store_engine(empty_url)
    inspector = sa.inspect(engine)
    assert {c["name"] for c in inspector.get_columns("mdm_approval")} == APPROVAL_COLUMNS
    inbox = [
        i for i in inspector.get_indexes("mdm_approval") if i["name"] == "ix_mdm_approval_inbox"
    ]
    assert inbox[0]["column_names"] == ["tenant_id", "status", "requested_at"]
    for table in tables.metadata.sorted_tables:
        assert "tenant_id" in {c["name"] for c in inspector.get_columns(table.name)}
    engine.dispose()


def test_migrations_create_exactly_the_tables_the_code_uses(empty_url):
    engine = create_store_engine(empty_url)
    migrations.upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, tables.metadata)
    engine.dispose()
    assert differences == []


@pytest.mark.postgres
def test_two_upgrades_at_once_one_migrates_the_other_finds_it_done(postgres_server):
    """Two `mdstudio db upgrade` processes started at once on a fresh database both succeed and
    migrate it once. To make them overlap however the machine schedules them, the test holds an
    uncommitted `alembic_version` table of its own until both processes wait on a lock, then
    rolls it back: two unguarded upgrades are then both creating the schema."""
    url = postgres_server.create_database("mdstudio_race")
    watcher = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    gate_engine = sa.create_engine(url)
    gate = gate_engine.connect()
    gate.begin()
    gate.exec_driver_sql("CREATE TABLE alembic_version (version_num varchar(32) NOT NULL)")
    upgraders = [
        subprocess.Popen(
            [sys.executable, "-m", "mdstudio_core.entrypoints.cli", "db", "upgrade", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "MDSTUDIO_DATABASE_URL": url},
            text=True,
        )
        for _ in range(2)
    ]

    def both_waiting() -> bool:
        assert all(upgrader.poll() is None for upgrader in upgraders), "an upgrade ended early"
        with watcher.connect() as connection:
            return connection.execute(WAITING_ON_A_LOCK).scalar_one() == 2

    wait_for(both_waiting, timeout=60)
    gate.rollback()
    gate.close()
    gate_engine.dispose()
    outcomes = [upgrader.communicate(timeout=60) for upgrader in upgraders]
    for upgrader, (out, err) in zip(upgraders, outcomes, strict=True):
        assert upgrader.returncode == 0, err
        assert json.loads(out)["revision"] == migrations.head_revision()
    with watcher.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, tables.metadata) == []
        assert connection.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    watcher.dispose()


WAITING_ON_A_LOCK = sa.text(
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s"
        time.sleep(0.05)
