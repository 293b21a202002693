"""The role that decides is judged again when the decision is made (issue 18, item 3), through
the service, the HTTP API and the CLI, on both backends: field F (tier2); alice submits a tier1
KPI on F; alice submits the deprecation of F (its role: metadata_steward); a kernel owner
approves the KPI; the steward's approval of the deprecation is now refused, naming
kernel_owner, and the request stays pending."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mdstudio_core.adapters import tables
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.errors import Forbidden
from mdstudio_core.domain.model import ApprovalStatus, EntityStatus, EntityType
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import approvals, catalog, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.http.conftest import is_problem
from tests.support.cli_helpers import run_cli
from tests.support.factories import (
    KERNEL_OWNER,
    SETTINGS,
    STEWARD,
    changed,
    event_types,
    kpi_request,
    metadata_request,
    person,
    store_snapshot,
)

FIELD = "finance.revenue.f"
REFUSAL = "role kernel_owner is required to decide this request"


def pending_deprecation(engine, tenant) -> Approval:
    """The issue's sequence up to the steward's decision; returns the pending deprecation."""
    alice = person(tenant, "alice")
    field = approvals.submit(
        UnitOfWork(engine), alice, metadata_request(FIELD, tier="tier2"), SETTINGS
    )
    approvals.approve(UnitOfWork(engine), person(tenant, "sam", STEWARD), field.id, None, SETTINGS)
    kpi = changed(kpi_request("finance.kpi.f_share", tier="tier1"), depends_on=[FIELD])
    kpi_pending = approvals.submit(UnitOfWork(engine), alice, kpi, SETTINGS)
    deprecated = changed(metadata_request(FIELD, tier="tier2"), status="deprecated")
    deprecation = approvals.submit(UnitOfWork(engine), alice, deprecated, SETTINGS)
    assert deprecation.required_role == STEWARD  # no tier1 KPI on F yet
    owner = person(tenant, "kim", KERNEL_OWNER)
    approvals.approve(UnitOfWork(engine), owner, kpi_pending.id, None, SETTINGS)
    return deprecation


def still_pending(engine, tenant, deprecation: Approval) -> None:
    reader = person(tenant, "rita")
    stored = approvals.get_approval(UnitOfWork(engine), reader, deprecation.id)
    assert stored.status is ApprovalStatus.PENDING
    field = catalog.get_entity(UnitOfWork(engine), reader, FIELD, EntityType.GLOBAL_METADATA)
    assert field.status is EntityStatus.ACTIVE


def test_the_service_refuses_the_steward_and_the_kernel_owner_decides(engine, uow, tenant):
    deprecation = pending_deprecation(engine, tenant)
    before = store_snapshot(engine)
    bob = person(tenant, "bob", STEWARD)
    for decide in (
        lambda: approvals.approve(uow, bob, deprecation.id, None, SETTINGS),
        lambda: approvals.reject(uow, bob, deprecation.id, "not needed"),
    ):
        with pytest.raises(Forbidden, match=REFUSAL):
            decide()
    assert store_snapshot(engine) == before
    still_pending(engine, tenant, deprecation)

    owner = person(tenant, "kim", KERNEL_OWNER)
    approved = approvals.approve(uow, owner, deprecation.id, None, SETTINGS)
    assert (approved.status, approved.required_role) == (ApprovalStatus.APPROVED, KERNEL_OWNER)
    stored = approvals.get_approval(uow, owner, deprecation.id)
    assert stored.required_role == KERNEL_OWNER  # the role that decided it is recorded
    with engine.connect() as connection:
        payload = connection.execute(
            sa.select(tables.events.c.payload).where(
                tables.events.c.correlation_id == deprecation.id,
                tables.events.c.type == "approval.approved",
            )
        ).scalar_one()
    assert payload["required_role"] == KERNEL_OWNER
    assert event_types(engine, deprecation.id)[-1] == "approval.approved"


def test_http_answers_403_naming_kernel_owner(engine, uow, tenant):
    deprecation = pending_deprecation(engine, tenant)
    secret, _ = tokens.create_token(uow, person(tenant, "bob", STEWARD))
    before = store_snapshot(engine)
    with TestClient(create_app(SETTINGS, engine)) as client:
        response = client.post(
            f"/approvals/{deprecation.id}/approve", headers={"Authorization": f"Bearer {secret}"}
        )
    assert is_problem(response, 403)
    assert REFUSAL in response.json()["detail"]
    assert store_snapshot(engine) == before
    still_pending(engine, tenant, deprecation)


def test_the_cli_exits_3_naming_kernel_owner(engine, store_url, tenant, monkeypatch):
    deprecation = pending_deprecation(engine, tenant)
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    before = store_snapshot(engine)
    result = run_cli(
        [
            *("approvals", "approve", str(deprecation.id)),
            *("--tenant", str(tenant), "--user", "bob", "--role", STEWARD),
        ]
    )
    assert result.exit_code == 3
    assert REFUSAL in result.stderr
    assert store_snapshot(engine) == before
    still_pending(engine, tenant, deprecation)
