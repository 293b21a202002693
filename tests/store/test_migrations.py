"""`mdstudio db upgrade` from empty, twice, on both backends; the result matches the tables. Two
upgrades at once; old data brought forward."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from mdstudio_core.adapters import migrations, tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.cli_helpers import run_cli

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
    "required_approvals",
    "overdue_at",
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
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("mdm_approval")}
    assert indexes["ix_mdm_approval_inbox"] == ["tenant_id", "status", "requested_at", "id"]
    assert indexes["ix_mdm_approval_recent"] == ["tenant_id", "requested_at", "id"]
    for table in tables.metadata.sorted_tables:  # every table is per tenant but the global ones
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert ("tenant_id" in columns) is (table not in tables.GLOBAL_TABLES), table.name
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


# Profiles and entities as revisions 0001 and 0002 wrote them (never the application's tables).
def old_profiles(revision: str) -> sa.TableClause:
    """At 0001 a profile has no key; at 0002 one brought forward from 0001 has an empty key."""
    columns = {
        "id": sa.Uuid(),
        "tenant_id": sa.Uuid(),
        "entity_urn": sa.String(),
        "quality_score": sa.Float(),
        "row_count": sa.BigInteger(),
        "trigger": sa.String(),
        "created_at": sa.DateTime(timezone=True),
    }
    if revision == "0002":
        columns["canonical_key"] = sa.String()
    return sa.table("mdm_profile", *(sa.column(name, type_) for name, type_ in columns.items()))


OLD_METADATA = sa.table(
    "mdm_global_metadata",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("canonical_key", sa.String()),
    sa.column("tier", sa.String()),
    sa.column("version", sa.Integer()),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("updated_by", sa.String()),
    sa.column("label", sa.String()),
    sa.column("domain", sa.String()),
    sa.column("data_type", sa.String()),
)


@pytest.mark.parametrize("revision", ["0001", "0002"])
def test_profiles_saved_before_0002_are_backfilled_with_their_key(empty_url, revision, monkeypatch):
    key = "finance.revenue.gross_amount"
    tenant, stranger = uuid.uuid4(), uuid.uuid4()
    at = dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)
    engine = create_store_engine(empty_url)
    migrations.upgrade(engine, revision)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(OLD_METADATA).values(
                id=uuid.uuid4(),
                tenant_id=tenant,
                canonical_key=key,
                tier="tier1",
                version=1,
                updated_at=at,
                updated_by="alice",
                label="Gross amount",
                domain="finance",
                data_type="decimal(18,2)",
            )
        )
        old_profile = {"quality_score": 91.5, "row_count": 20, "trigger": "approval"}
        if revision == "0002":
            old_profile["canonical_key"] = ""
        connection.execute(
            sa.insert(old_profiles(revision)),
            [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant,
                    "entity_urn": f"urn:mdstudio:{tenant}:metadata:{key}",
                    "created_at": at,
                    **old_profile,
                },
                {  # an URN naming another tenant than its row: not this row's key to guess
                    "id": uuid.uuid4(),
                    "tenant_id": tenant,
                    "entity_urn": f"urn:mdstudio:{stranger}:metadata:{key}",
                    "created_at": at,
                    **old_profile,
                },
            ],
        )
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", empty_url)
    for _ in range(2):  # the backfill is idempotent
        assert run_cli(["db", "upgrade"]).exit_code == 0

    history = run_cli(
        ["profiles", "history", key, "--json", "--tenant", str(tenant), "--user", "x"]
    )
    assert history.exit_code == 0, history.stderr
    assert [(p["canonical_key"], p["quality_score"]) for p in history.json] == [(key, 91.5)]
    with UnitOfWork(engine) as uow:
        assert uow.profiles.last_profiled_at([(tenant, key)]) == {(tenant, key): at}
        keys = uow.connection.execute(sa.select(tables.profiles.c.canonical_key)).scalars()
        assert sorted(keys) == ["", key]
    engine.dispose()


OLD_SESSION = sa.table(
    "mdm_console_session",
    sa.column("session_hash", sa.String()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("token_id", sa.Uuid()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("expires_at", sa.DateTime(timezone=True)),
)


def test_sessions_opened_before_0009_count_as_seen_when_opened(empty_url):
    """0009 gives every session a last-seen time: an existing one gets its opening time, so an
    old idle session ends at once under the idle timeout rather than living on."""
    opened = dt.datetime(2024, 5, 1, 2, 0, tzinfo=dt.UTC)
    engine = create_store_engine(empty_url)
    migrations.upgrade(engine, "0008")
    with engine.begin() as connection:
        connection.execute(
            sa.insert(OLD_SESSION).values(
                session_hash="a" * 64,
                tenant_id=uuid.uuid4(),
                token_id=uuid.uuid4(),
                created_at=opened,
                expires_at=opened + dt.timedelta(hours=8),
            )
        )
    migrations.upgrade(engine)
    with engine.connect() as connection:
        [seen] = connection.execute(sa.select(tables.console_sessions.c.last_seen_at)).scalars()
        indexes = {i["name"] for i in sa.inspect(connection).get_indexes("mdm_console_session")}
    assert seen == opened
    assert "ix_mdm_console_session_token" in indexes
    with engine.connect() as connection, connection.begin():  # and back down to 0008
        command.downgrade(migrations.alembic_config(connection), "0008")
    inspector = sa.inspect(engine)
    assert "last_seen_at" not in {c["name"] for c in inspector.get_columns("mdm_console_session")}
    assert not {"mdm_console_login_attempt", "mdm_server_key"} & set(inspector.get_table_names())
    engine.dispose()
