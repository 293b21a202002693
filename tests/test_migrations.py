"""`mdstudio db upgrade` from empty, twice, on both backends; the result matches the tables."""

from __future__ import annotations

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
        assert result.json["revision"] == "0002"
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
