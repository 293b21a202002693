"""The command line end to end: identity, JSON output, exit codes and messages."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.cli_helpers import run_cli
from tests.support.factories import metadata_request, store_snapshot


def submit(request, user="alice", extra=()):
    return run_cli(
        ["approvals", "submit", "--file", "-", "--user", user, "--json", *extra],
        stdin=json.dumps(request),
    )


def test_story_submit_approve_list(cli_env, tmp_path):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(metadata_request()))
    submitted = run_cli(["approvals", "submit", "--file", str(path), "--user", "alice", "--json"])
    assert submitted.exit_code == 0, submitted.stderr
    record = submitted.json
    assert record["status"] == "pending"
    assert record["required_role"] == "kernel_owner"

    approved = run_cli(
        ["--user", "bob", "--role", "kernel_owner", "approvals", "approve", record["id"], "--json"]
    )
    assert approved.exit_code == 0, approved.stderr
    assert approved.json["status"] == "approved"
    assert approved.json["decided_by"] == "bob"

    shown = run_cli(["approvals", "show", record["id"], "--user", "carol", "--json"])
    assert shown.json["payload"]["canonical_key"] == "finance.revenue.gross_amount"
    events = run_cli(["events", "list", "--user", "carol", "--json"]).json
    assert [e["type"] for e in events] == [
        "metadata.approved",
        "metadata.changed",
        "metadata.profile.due",
        "approval.approved",
    ]
    after = run_cli(["events", "list", "--after", str(events[1]["id"]), "--user", "c", "--json"])
    assert [e["id"] for e in after.json] == [events[2]["id"], events[3]["id"]]
    listed = run_cli(["metadata", "list", "--user", "carol", "--json"]).json
    assert [m["canonical_key"] for m in listed] == ["finance.revenue.gross_amount"]
    shown = run_cli(["metadata", "show", "finance.revenue.gross_amount", "--user", "c"])
    assert "gross_amount" in shown.stdout and shown.exit_code == 0
    table = run_cli(["approvals", "list", "--status", "approved", "--user", "carol"])
    assert record["id"] in table.stdout


def test_human_output_of_submit(cli_env):
    result = run_cli(
        ["approvals", "submit", "--file", "-", "--user", "alice"],
        stdin=json.dumps(metadata_request(tier="tier2")),
    )
    assert result.exit_code == 0
    assert "status:" in result.stdout and "pending" in result.stdout
    assert "metadata_steward" in result.stdout


def test_identity_from_environment_with_several_roles(cli_env, monkeypatch):
    record = submit(metadata_request(tier="tier2")).json
    monkeypatch.setenv("MDSTUDIO_USER", "bob")
    monkeypatch.setenv("MDSTUDIO_ROLE", "viewer,metadata_steward")
    result = run_cli(["approvals", "approve", record["id"], "--json"])
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "stdin", "code", "mentions"),
    [
        (["approvals", "submit", "--file", "-", "--user", "a"], "{not json", 2, "malformed JSON"),
        (["approvals", "submit", "--file", "/nonexistent.json", "--user", "a"], "", 2, "file"),
        (
            ["approvals", "submit", "--file", "-", "--user", "a"],
            json.dumps({**metadata_request(), "entity_type": "TABLE"}),
            2,
            "entity_type",
        ),
        (
            ["approvals", "submit", "--file", "-", "--user", "a"],
            json.dumps(metadata_request(key="bad key!")),
            2,
            "canonical_key",
        ),
        (["approvals", "submit", "--file", "-"], json.dumps(metadata_request()), 2, "user"),
        (
            ["approvals", "submit", "--file", "-", "--user", "a", "--tenant", "acme"],
            json.dumps(metadata_request()),
            2,
            "tenant",
        ),
        (["approvals", "approve", "not-a-uuid", "--user", "b"], "", 2, "approval_id"),
        (["approvals", "approve", str(uuid.uuid4()), "--user", "b"], "", 4, "not found"),
        (["metadata", "show", "no.such.key", "--user", "b"], "", 4, "not found"),
        (["approvals", "reject", str(uuid.uuid4()), "--user", "b"], "", 2, "--reason"),
    ],
)
def test_bad_input_exit_codes(cli_env, store_url, args, stdin, code, mentions):
    from mdstudio_core.adapters.database import create_store_engine

    engine = create_store_engine(store_url)
    before = store_snapshot(engine)
    result = run_cli(args, stdin=stdin)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert mentions in result.stderr
    assert store_snapshot(engine) == before
    engine.dispose()


def test_decision_exit_codes(cli_env):
    record = submit(metadata_request()).json
    approve = ["approvals", "approve", record["id"]]
    self_approval = run_cli([*approve, "--user", "alice", "--role", "kernel_owner"])
    assert self_approval.exit_code == 3 and "four-eyes" in self_approval.stderr
    wrong_role = run_cli([*approve, "--user", "bob", "--role", "metadata_steward"])
    assert wrong_role.exit_code == 3 and "kernel_owner" in wrong_role.stderr
    other_tenant = run_cli(
        [*approve, "--user", "bob", "--role", "kernel_owner", "--tenant", str(uuid.uuid4())]
    )
    assert other_tenant.exit_code == 4
    assert run_cli([*approve, "--user", "bob", "--role", "kernel_owner"]).exit_code == 0
    twice = run_cli([*approve, "--user", "carol", "--role", "kernel_owner"])
    assert twice.exit_code == 5 and "already approved" in twice.stderr


def test_reject_and_cancel(cli_env):
    first = submit(metadata_request(tier="tier2")).json
    rejected = run_cli(
        [
            "approvals",
            "reject",
            first["id"],
            "--reason",
            "wrong table",
            "--user",
            "bob",
            "--role",
            "metadata_steward",
            "--json",
        ]
    )
    assert rejected.json["status"] == "rejected"
    second = submit(metadata_request(tier="tier2")).json
    assert run_cli(["approvals", "cancel", second["id"], "--user", "bob"]).exit_code == 3
    cancelled = run_cli(["approvals", "cancel", second["id"], "--user", "alice", "--json"])
    assert cancelled.json["status"] == "cancelled"


def test_policy_commands(cli_env):
    denied = run_cli(["policy", "set", "--lane", "governed", "--required-role", "x", "--user", "a"])
    assert denied.exit_code == 3
    result = run_cli(
        [
            "policy",
            "set",
            "--lane",
            "governed",
            "--tier",
            "tier3",
            "--required-role",
            "junior_steward",
            "--user",
            "root",
            "--role",
            "tenant_admin",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert result.json["governed"]["tier3"] == "junior_steward"
    assert result.json["governed"]["tier2"] == "metadata_steward"
    record = submit(metadata_request(tier="tier3")).json
    assert record["required_role"] == "junior_steward"


def test_missing_schema_says_to_upgrade(monkeypatch, tmp_path, tenant):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    result = run_cli(["approvals", "list", "--tenant", str(tenant), "--user", "a"])
    assert result.exit_code == 1
    assert "mdstudio db upgrade" in result.stderr


def test_oversized_or_deeply_nested_requests_are_invalid_input(cli_env, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_MAX_PAYLOAD_BYTES", "2000")
    big = submit(metadata_request(description="x" * 3000))
    assert big.exit_code == 2 and "payload" in big.stderr
    assert "MDSTUDIO_MAX_PAYLOAD_BYTES" in big.stderr
    for depth in (40, 5000):
        text = json.dumps(metadata_request()).replace(
            '"label":', '"notes": ' + "[" * depth + "]" * depth + ', "label":', 1
        )
        result = run_cli(["approvals", "submit", "--file", "-", "--user", "alice"], stdin=text)
        assert result.exit_code == 2, result.stderr
