"""`mdstudio tokens create|list|revoke`: the secret is printed once, only its hash is stored."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid

import sqlalchemy as sa
from fastapi.testclient import TestClient

from mdstudio_core.adapters import tables
from mdstudio_core.entrypoints.http import create_app
from tests.support.cli_helpers import run_cli


def test_create_list_revoke(store_url, engine, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    created = run_cli(
        [
            "tokens",
            "create",
            "--tenant",
            tenant,
            "--user",
            "bob",
            "--role",
            "kernel_owner",
            "--role",
            "metadata_steward",
            "--expires-in",
            "30d",
            "--json",
        ]
    )
    assert created.exit_code == 0, created.stderr
    token = created.json["token"]
    assert token.startswith("mds_") and len(token) > 40
    assert created.json["roles"] == ["kernel_owner", "metadata_steward"]
    assert created.json["expires"] is not None
    plain = run_cli(["tokens", "create", "--tenant", other, "--user", "eve"])
    assert plain.exit_code == 0
    assert plain.stdout.strip().startswith("mds_")
    assert "shown only this once" in plain.stderr
    forever = run_cli(
        ["tokens", "create", "--tenant", other, "--user", "ops", "--expires-in", "never", "--json"]
    )
    assert forever.exit_code == 0 and forever.json["expires"] is None

    with engine.connect() as connection:
        stored = connection.execute(sa.select(tables.api_tokens)).all()
    assert hashlib.sha256(token.encode()).hexdigest() in {row.token_hash for row in stored}
    assert token not in str(stored)

    listed = run_cli(["tokens", "list", "--json"])
    assert [t["user"] for t in listed.json] == ["bob", "eve", "ops"]
    # Without --expires-in a token lives 90 days.
    eve = listed.json[1]
    lifetime = dt.datetime.fromisoformat(eve["expires"]) - dt.datetime.fromisoformat(eve["created"])
    assert lifetime == dt.timedelta(days=90)
    assert listed.json[2]["expires"] is None
    assert set(listed.json[0]) == {"id", "tenant", "user", "roles", "created", "expires", "revoked"}
    assert token not in listed.stdout
    only = run_cli(["tokens", "list", "--tenant", tenant, "--json"])
    assert [t["id"] for t in only.json] == [created.json["id"]]
    table = run_cli(["tokens", "list"])
    assert "EXPIRES" in table.stdout and "bob" in table.stdout

    with TestClient(create_app(engine=engine)) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/approvals", headers=headers).status_code == 200
        revoked = run_cli(["tokens", "revoke", created.json["id"], "--json"])
        assert revoked.exit_code == 0
        assert revoked.json["revoked"] is not None
        assert client.get("/approvals", headers=headers).status_code == 401
    again = run_cli(["tokens", "revoke", created.json["id"], "--json"])
    assert again.json["revoked"] == revoked.json["revoked"]


def test_token_errors_use_the_cli_exit_codes(store_url, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    tenant = str(uuid.uuid4())
    cases = [
        (
            ["tokens", "create", "--tenant", tenant, "--user", "bob", "--expires-in", "soon"],
            2,
            "expires_in",
        ),
        (
            ["tokens", "create", "--tenant", tenant, "--user", "bob", "--expires-in", "0d"],
            2,
            "expires_in",
        ),
        (["tokens", "create", "--tenant", "acme", "--user", "bob"], 2, "tenant"),
        (["tokens", "create", "--tenant", tenant], 2, "user"),
        (["tokens", "create", "--tenant", tenant, "--user", "bob", "--role", "a b"], 2, "role"),
        (["tokens", "revoke", "nope"], 2, "token_id"),
        (["tokens", "revoke", str(uuid.uuid4())], 4, "not found"),
        (["tokens", "list", "--tenant", "acme"], 2, "tenant"),
    ]
    for args, code, reason in cases:
        result = run_cli(args)
        assert result.exit_code == code, (args, result.stderr)
        assert reason in result.stderr, (args, result.stderr)
