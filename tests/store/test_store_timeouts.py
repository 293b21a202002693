"""The store is bounded on PostgreSQL: a lock another transaction holds, or a statement that runs
too long, fails the request quickly (CLI exit 1, HTTP 503) with a message naming the timeout,
and never hangs it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import approvals, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.cli_helpers import run_cli
from tests.support.factories import KERNEL_OWNER, SETTINGS, metadata_request, person
from tests.support.held_locks import released_after

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("store_url", ["postgresql"], indirect=True),
]

# Each case: the bounds set, the variable the failure must name. A lock wait also counts
# against the statement timeout, so whichever bound is shorter is the one that fires.
BOUNDS = [
    pytest.param(
        {"MDSTUDIO_STORE_LOCK_TIMEOUT_SECONDS": "0.3"},
        "MDSTUDIO_STORE_LOCK_TIMEOUT_SECONDS",
        id="lock",
    ),
    pytest.param(
        {
            "MDSTUDIO_STORE_STATEMENT_TIMEOUT_SECONDS": "0.3",
            "MDSTUDIO_STORE_LOCK_TIMEOUT_SECONDS": "20",
        },
        "MDSTUDIO_STORE_STATEMENT_TIMEOUT_SECONDS",
        id="statement",
    ),
]
# Whatever the outcome, the approver gets an answer well before the row is released.
QUICKLY_S = 5.0
RELEASED_AFTER_S = 10.0


@pytest.fixture
def locked_approval(engine, tenant) -> Iterator[Approval]:
    """A pending request whose row another transaction holds `FOR UPDATE` (a stuck decider),
    released after RELEASED_AFTER_S at the latest, so an unbounded store would answer late
    instead of hanging the test."""
    approval = approvals.submit(
        UnitOfWork(engine), person(tenant, "alice"), metadata_request(), SETTINGS
    )
    holder = engine.connect()
    transaction = holder.begin()
    holder.execute(
        sa.select(tables.approvals.c.id)
        .where(tables.approvals.c.id == approval.id)
        .with_for_update()
    )
    with released_after(transaction, RELEASED_AFTER_S):
        yield approval
    holder.close()


def test_store_connections_carry_the_timeouts(store_url):
    settings = Settings.from_env(
        {
            "MDSTUDIO_DATABASE_URL": store_url,
            "MDSTUDIO_STORE_STATEMENT_TIMEOUT_SECONDS": "12",
            "MDSTUDIO_STORE_LOCK_TIMEOUT_SECONDS": "1.5",
        }
    )
    engine = create_store_engine(settings.store_url, settings.store_timeouts)
    with engine.connect() as connection:
        shown = [
            connection.exec_driver_sql(f"SHOW {name}").scalar()
            for name in ("statement_timeout", "lock_timeout")
        ]
    engine.dispose()
    assert shown == ["12s", "1500ms"]


@pytest.mark.parametrize(("bounds", "variable"), BOUNDS)
def test_cli_approve_on_a_stuck_lock_exits_1_naming_the_timeout(
    locked_approval, uow, store_url, tenant, monkeypatch, bounds, variable
):
    bob = person(tenant, "bob", KERNEL_OWNER)
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    for name, value in bounds.items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    result = run_cli(
        [
            *("approvals", "approve", str(locked_approval.id)),
            *("--tenant", str(tenant), "--user", "bob", "--role", KERNEL_OWNER),
        ]
    )
    assert time.monotonic() - started < QUICKLY_S
    assert result.exit_code == 1
    assert result.stderr.startswith("error (StoreTimeout): ")
    assert variable in result.stderr
    assert approvals.get_approval(uow, bob, locked_approval.id).status == "pending"


@pytest.mark.parametrize(("bounds", "variable"), BOUNDS)
def test_http_approve_on_a_stuck_lock_is_503_naming_the_timeout(
    locked_approval, uow, store_url, tenant, bounds, variable
):
    secret, _ = tokens.create_token(uow, person(tenant, "bob", KERNEL_OWNER))
    settings = Settings.from_env({"MDSTUDIO_DATABASE_URL": store_url, **bounds})
    with TestClient(create_app(settings)) as client:
        started = time.monotonic()
        response = client.post(
            f"/approvals/{locked_approval.id}/approve",
            headers={"Authorization": f"Bearer {secret}"},
        )
        elapsed = time.monotonic() - started
    assert elapsed < QUICKLY_S
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert variable in response.json()["detail"]
