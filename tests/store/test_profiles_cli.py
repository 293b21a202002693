"""`mdstudio profiles preview|history|run` on both store backends, with the demo warehouse."""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from demo import warehouse as demo_warehouse
from mdstudio_core.adapters import tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Binding, Tier
from mdstudio_core.service_layer.profiling import (
    BoundEntity,
    profile_table,
    save_profiles,
    source_engines,
)
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.cli_helpers import run_cli
from tests.support.factories import (
    BACKTRACKING_BINDING,
    DEMO_BINDING,
    SLOW_PATTERN_BINDING,
    create_codes,
    metadata_request,
    store_snapshot,
)

KEY = "finance.revenue.gross_amount"
# Who may preview the tier1 requests below: their required role.
DECIDER = ("--user", "carol", "--role", "kernel_owner")


@pytest.fixture
def cli_env(store_url, monkeypatch, tenant, tmp_path):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", str(tenant))
    monkeypatch.setenv("MDSTUDIO_SOURCE_DEMO_URL", demo_warehouse.build(tmp_path / "wh.db"))
    return store_url


def submit(binding=DEMO_BINDING):
    import json

    result = run_cli(
        ["approvals", "submit", "--file", "-", "--user", "alice", "--json"],
        stdin=json.dumps(metadata_request(binding=binding)),
    )
    assert result.exit_code == 0, result.stderr
    return result.json["id"]


def test_preview_of_a_pending_approval_saves_nothing(cli_env):
    approval_id = submit()
    engine = create_store_engine(cli_env)
    before = store_snapshot(engine)
    result = run_cli(["profiles", "preview", "--approval", approval_id, *DECIDER, "--json"])
    assert result.exit_code == 0, result.stderr
    profile = result.json
    assert profile["quality_score"] == 91.89  # hand-computed in tests/support/factories.py
    assert profile["row_count"] == 20
    assert profile["approval_id"] == approval_id
    assert [c["name"] for c in profile["columns"]] == ["order_id", "gross_amount", "currency"]
    assert store_snapshot(engine) == before
    assert profile["check"] == {
        "passed": True,
        "severity": "ERROR",
        "tier": "tier1",
        "quality_score": 91.89,
        "threshold": 80.0,
        "description": "score 91.89 meets the tier1 minimum 80",
    }
    human = run_cli(["profiles", "preview", "--approval", approval_id, *DECIDER])
    assert "91.89" in human.stdout and "gross_amount" in human.stdout
    assert "check: passed (score 91.89 meets the tier1 minimum 80)" in human.stdout
    engine.dispose()


def test_preview_gives_the_verdict_of_the_tiers_check(cli_env, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_TIER1_MIN_SCORE", "95")
    approval_id = submit()
    human = run_cli(["profiles", "preview", "--approval", approval_id, *DECIDER])
    assert human.exit_code == 0, human.stderr
    assert "check: failed (score 91.89 is below the tier1 minimum 95)" in human.stdout
    result = run_cli(["profiles", "preview", "--approval", approval_id, *DECIDER, "--json"])
    assert result.json["check"]["passed"] is False
    assert result.json["check"]["threshold"] == 95


def test_preview_of_live_entity_and_its_errors(cli_env):
    approval_id = submit()
    assert (
        run_cli(
            ["approvals", "approve", approval_id, "--user", "bob", "--role", "kernel_owner"]
        ).exit_code
        == 0
    )
    assert run_cli(["profiles", "preview", KEY, *DECIDER, "--json"]).json["quality_score"] == 91.89
    assert run_cli(["profiles", "preview", "no.such.key", *DECIDER]).exit_code == 4
    assert run_cli(["profiles", "preview", *DECIDER]).exit_code == 2
    missing_table = submit({**DEMO_BINDING, "table": "no_such_table"})
    result = run_cli(["profiles", "preview", "--approval", missing_table, *DECIDER])
    assert result.exit_code == 2 and "no_such_table" in result.stderr
    unknown_source = submit({**DEMO_BINDING, "source": "elsewhere"})
    result = run_cli(["profiles", "preview", "--approval", unknown_source, *DECIDER])
    assert result.exit_code == 1 and "MDSTUDIO_SOURCE_ELSEWHERE_URL" in result.stderr


def test_history_newest_first_and_run_request(cli_env, tenant):
    approval_id = submit()
    run_cli(["approvals", "approve", approval_id, "--user", "bob", "--role", "kernel_owner"])
    engine = create_store_engine(cli_env)
    for run_id in ("run-1", "run-2"):
        results = profile_table(
            [BoundEntity(KEY, Binding.model_validate(DEMO_BINDING))],
            engine_for=source_engines(Settings.from_env()),
        )
        tiered = [(result, Tier.TIER1) for result in results]
        save_profiles(UnitOfWork(engine), Settings.from_env(), tenant, tiered, run_id)
    save_profiles(UnitOfWork(engine), Settings.from_env(), tenant, tiered, "run-2")  # retried
    history = run_cli(["profiles", "history", KEY, "--user", "c", "--json"]).json
    assert [h["run_id"] for h in history] == ["run-2", "run-1"]
    assert history[0]["entity_urn"] == f"urn:mdstudio:{tenant}:metadata:{KEY}"
    assert (
        run_cli(["profiles", "history", KEY, "--limit", "1", "--user", "c", "--json"]).json[0][
            "run_id"
        ]
        == "run-2"
    )
    other = run_cli(["profiles", "history", KEY, "--user", "c", "--tenant", str(uuid.uuid4())])
    assert other.exit_code == 4

    requested = run_cli(["profiles", "run", KEY, "--force", "--user", "dave", "--json"])
    assert requested.exit_code == 0, requested.stderr
    assert requested.json["type"] == "metadata.profile.requested"
    assert requested.json["payload"] == {
        "canonical_key": KEY,
        "trigger": "manual",
        "force": True,
        "requested_by": "dave",
        "full": False,
    }
    full = run_cli(["profiles", "run", KEY, "--full", "--user", "dave", "--json"])
    assert full.exit_code == 0, full.stderr
    assert (full.json["payload"]["full"], full.json["payload"]["force"]) == (True, False)
    assert run_cli(["profiles", "run", "no.such.key", "--user", "dave"]).exit_code == 4
    with engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(tables.profiles)).scalar_one()
            == 2
        )
    engine.dispose()


def test_a_backtracking_pattern_cannot_hang_a_preview(cli_env, warehouse_url, monkeypatch):
    """`^(a+)+$` over 40 a's and a mismatch: Python's `re` ran for hours past any timeout on
    SQLite; RE2 matches it at once, on SQLite and on PostgreSQL."""
    create_codes(warehouse_url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", warehouse_url)
    monkeypatch.setenv("MDSTUDIO_TIER1_TIMEOUT_SECONDS", "1")
    approval_id = submit(BACKTRACKING_BINDING)
    started = time.monotonic()
    result = run_cli(["profiles", "preview", "--approval", approval_id, *DECIDER, "--json"])
    assert time.monotonic() - started < 3
    assert result.exit_code == 0, result.stderr
    [code] = result.json["columns"]
    assert (code["n"], code["non_null"], code["distinct"], code["valid"]) == (5, 4, 3, 2)
    assert result.json["quality_score"] == 50.0


@pytest.mark.postgres
def test_a_slow_pattern_on_postgres_ends_with_the_tier_timeout(cli_env, slow_blobs_source):
    approval_id = submit(SLOW_PATTERN_BINDING)
    started = time.monotonic()
    result = run_cli(["profiles", "preview", "--approval", approval_id, *DECIDER])
    assert time.monotonic() - started < 3
    assert result.exit_code == 1
    assert "exceeded the statement timeout of 1 s" in result.stderr
