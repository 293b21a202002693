"""Tenant isolation in every store query: two tenants hold the same keys; every repository
operation done for one leaves the other's rows and the other's reads untouched, and reads
return only the caller's rows. The tenants' data differ (scores, times, labels) so that a read
leaking across tenants shows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.approvals import Endorsement
from mdstudio_core.domain.events import NewEvent, validate_event
from mdstudio_core.domain.model import (
    CATALOG_ENTITY_TYPES,
    ApprovalStatus,
    EntityType,
    Identity,
    Lane,
    Tier,
)
from mdstudio_core.service_layer import approvals, change_sets, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import (
    KERNEL_OWNER,
    SETTINGS,
    STEWARD,
    business_rule_request,
    glossary_request,
    kpi_request,
    make_event,
    metadata_request,
    person,
    stored_profile,
)

A, B = uuid.UUID(int=0xA), uuid.UUID(int=0xB)
KEY = "finance.revenue.gross_amount"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def populate(engine: sa.Engine, tenant: uuid.UUID, offset_hours: int, label: str) -> None:
    """The same keys in every tenant; `offset_hours` and `label` make each tenant's data its own."""
    for request in (
        metadata_request(label=label),
        kpi_request(),
        business_rule_request(),
        glossary_request(),
    ):
        pending = approvals.submit(UnitOfWork(engine), person(tenant, "alice"), request, SETTINGS)
        decider = person(tenant, "bob", STEWARD, KERNEL_OWNER)
        approvals.approve(UnitOfWork(engine), decider, pending.id, None, SETTINGS)
    with UnitOfWork(engine) as uow:  # tier1 takes two kernel owners from now on
        uow.policies.set(tenant, Lane.KERNEL, Tier.TIER1.value, KERNEL_OWNER, "root", T0)
        uow.policies.set_approvals(tenant, Lane.KERNEL, Tier.TIER1.value, 2)
        uow.commit()
    pending = approvals.submit(
        UnitOfWork(engine), person(tenant, "alice"), metadata_request(label="next"), SETTINGS
    )
    approvals.approve(
        UnitOfWork(engine), person(tenant, "bob", KERNEL_OWNER), pending.id, None, SETTINGS
    )
    rejected = change_sets.submit(
        UnitOfWork(engine), person(tenant, "alice"), f"Set {label}", [glossary_request(label)],
        SETTINGS,
    )  # fmt: skip
    approvals.reject(UnitOfWork(engine), person(tenant, "bob", STEWARD), rejected.approval.id, "no")
    with UnitOfWork(engine) as uow:
        for hours in (0, 1):
            at = T0 + dt.timedelta(hours=offset_hours + hours)
            uow.profiles.add(stored_profile(tenant, KEY, at, 50.0 + offset_hours + hours))
        uow.policies.set(tenant, Lane.GOVERNED, "*", f"steward_{label}", "root", T0)
        uow.commit()
    tokens.create_token(UnitOfWork(engine), person(tenant, f"user_{label}", STEWARD))


def rows_of(engine: sa.Engine, tenant: uuid.UUID) -> dict[str, list[tuple[str, ...]]]:
    with engine.connect() as connection:
        return {
            table.name: sorted(
                tuple(str(value) for value in row)
                for row in connection.execute(sa.select(table).where(table.c.tenant_id == tenant))
            )
            for table in tables.metadata.sorted_tables
            if "tenant_id" in table.c
        }


def reads_of(engine: sa.Engine, tenant: uuid.UUID) -> dict[str, Any]:
    """Everything the repositories let one tenant read, as plain values."""
    with UnitOfWork(engine) as uow:
        [pending] = uow.approvals.list(tenant, ApprovalFilter(status=ApprovalStatus.PENDING))
        listed = uow.approvals.list(tenant, ApprovalFilter(include_payload=True))
        [change_set] = [
            uow.approvals.get(tenant, a.id)
            for a in listed
            if a.summary["entity_type"] == EntityType.CHANGE_SET.value
        ]
        assert change_set is not None
        return {
            "approvals": [a.summary for a in listed],
            "approval": uow.approvals.get(tenant, pending.id),
            "endorsements": uow.approvals.endorsements_of(tenant, [a.id for a in listed]),
            "items": uow.change_sets.items(change_set),
            "item_counts": uow.change_sets.counts(tenant, [a.id for a in listed]),
            "approval_counts": uow.policies.approval_counts(tenant),
            "entities": {kind: uow.entities.list(kind, tenant) for kind in CATALOG_ENTITY_TYPES},
            "entity": uow.entities.get(EntityType.GLOBAL_METADATA, tenant, KEY),
            "many": uow.entities.get_many(EntityType.GLOBAL_METADATA, [(tenant, KEY)]),
            "events": uow.events.list(tenant_id=tenant, limit=1000),
            "history": uow.profiles.history(tenant, KEY),
            "last_profiled": uow.profiles.last_profiled_at([(tenant, KEY)]),
            "overrides": uow.policies.overrides(tenant),
            "tokens": uow.tokens.list(tenant),
        }


def _entity_state(uow: UnitOfWork, tenant: uuid.UUID) -> dict[str, Any]:
    live = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, KEY)
    assert live is not None
    return dict(live.state)


def _new_event(tenant: uuid.UUID) -> NewEvent:
    payload = {"canonical_key": KEY, "trigger": "manual", "force": False, "requested_by": "carol"}
    valid = validate_event("metadata.profile.requested", payload)
    return make_event(
        "metadata.profile.requested", tenant, KEY, valid, actor="carol", occurred_at=T0
    )


Operation = Callable[[sa.Engine, uuid.UUID], None]


def _in_uow(action: Callable[[UnitOfWork, uuid.UUID], Any]) -> Operation:
    def run(engine: sa.Engine, tenant: uuid.UUID) -> None:
        with UnitOfWork(engine) as uow:
            action(uow, tenant)
            uow.commit()

    return run


def _approve_pending(engine: sa.Engine, tenant: uuid.UUID) -> None:
    with UnitOfWork(engine) as uow:
        [pending] = uow.approvals.list(tenant, ApprovalFilter(status=ApprovalStatus.PENDING))
    approvals.approve(
        UnitOfWork(engine), person(tenant, "carol", KERNEL_OWNER), pending.id, None, SETTINGS
    )


def _decide_pending(engine: sa.Engine, tenant: uuid.UUID) -> None:
    with UnitOfWork(engine) as uow:
        [listed] = uow.approvals.list(tenant, ApprovalFilter(status=ApprovalStatus.PENDING))
        pending = uow.approvals.get(tenant, listed.id, for_update=True)
        assert pending is not None
        decided = dataclasses.replace(
            pending, status=ApprovalStatus.REJECTED, decided_by="carol", decided_at=T0
        )
        assert uow.approvals.record_decision(decided)
        uow.commit()


def _update_entity(uow: UnitOfWork, tenant: uuid.UUID) -> None:
    state = {**_entity_state(uow, tenant), "label": "changed"}
    assert uow.entities.update(EntityType.GLOBAL_METADATA, tenant, KEY, 1, state, "carol", T0)


def _revoke_tokens(uow: UnitOfWork, tenant: uuid.UUID) -> None:
    for token in uow.tokens.list(tenant):
        uow.tokens.revoke(token.id, T0)


OPERATIONS: dict[str, Operation] = {
    "approvals.add (submit)": lambda engine, tenant: approvals.submit(
        UnitOfWork(engine), person(tenant, "dave"), metadata_request("finance.other"), SETTINGS
    ),
    "approvals.record_decision": _decide_pending,
    "approve (entities.update, events.append)": _approve_pending,
    "entities.update": _in_uow(_update_entity),
    "entities.insert": _in_uow(
        lambda uow, tenant: uow.entities.insert(
            EntityType.GLOBAL_METADATA,
            tenant,
            uuid.uuid4(),
            {**_entity_state(uow, tenant), "canonical_key": "finance.new"},
            "carol",
            T0,
        )
    ),
    "events.append": _in_uow(lambda uow, tenant: uow.events.append([_new_event(tenant)])),
    "profiles.add": _in_uow(
        lambda uow, tenant: uow.profiles.add(
            stored_profile(tenant, KEY, T0 + dt.timedelta(days=9), 1.0)
        )
    ),
    "policies.set": _in_uow(
        lambda uow, tenant: uow.policies.set(tenant, Lane.KERNEL, Tier.TIER1.value, "x", "r", T0)
    ),
    "tokens.revoke": _in_uow(_revoke_tokens),
    "tokens.add": lambda engine, tenant: tokens.create_token(
        UnitOfWork(engine), Identity(tenant, "erin", frozenset())
    ),
    "change set (approvals.add, change_sets.add_items)": lambda engine, tenant: change_sets.submit(
        UnitOfWork(engine), person(tenant, "dave"), "Mine", [glossary_request()], Settings()
    ),
    "approvals.endorse": _in_uow(
        lambda uow, tenant: uow.approvals.endorse(
            uow.approvals.get(
                tenant,
                uow.approvals.list(tenant, ApprovalFilter(status=ApprovalStatus.PENDING))[0].id,
            ),
            Endorsement("erin", T0),
        )
    ),
    "policies.set_approvals": _in_uow(
        lambda uow, tenant: uow.policies.set_approvals(tenant, Lane.GOVERNED, "*", 3)
    ),
}


@pytest.fixture
def two_tenants(engine: sa.Engine) -> sa.Engine:
    populate(engine, A, offset_hours=0, label="A")
    populate(engine, B, offset_hours=5, label="B")
    return engine


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize(("actor", "other"), [(A, B), (B, A)], ids=["A acts", "B acts"])
def test_an_operation_in_one_tenant_leaves_the_other_untouched(
    two_tenants, operation, actor, other
):
    rows, reads = rows_of(two_tenants, other), reads_of(two_tenants, other)
    OPERATIONS[operation](two_tenants, actor)
    assert rows_of(two_tenants, other) == rows
    assert reads_of(two_tenants, other) == reads


@pytest.mark.parametrize("tenant", [A, B], ids=["A", "B"])
def test_every_read_returns_only_the_callers_rows(two_tenants, uow, tenant):
    reads = reads_of(two_tenants, tenant)
    label, offset = ("A", 0) if tenant == A else ("B", 5)
    assert reads["entity"].tenant_id == tenant and reads["entity"].state["label"] == label
    assert list(reads["many"]) == [(tenant, KEY)]
    assert reads["many"][(tenant, KEY)].tenant_id == tenant
    assert all(e.tenant_id == tenant for kind in reads["entities"].values() for e in kind)
    assert all(len(kind) == 1 for kind in reads["entities"].values())
    assert [p.quality_score for p in reads["history"]] == [51.0 + offset, 50.0 + offset]
    assert reads["last_profiled"] == {(tenant, KEY): T0 + dt.timedelta(hours=offset + 1)}
    assert reads["overrides"] == {
        ("governed", "*"): f"steward_{label}",
        ("kernel", "tier1"): KERNEL_OWNER,
    }
    assert reads["approval_counts"] == {("governed", "*"): 1, ("kernel", "tier1"): 2}
    assert [e.user for e in reads["approval"].endorsements] == ["bob"]
    assert [list(e) for e in reads["endorsements"].values()] == [
        list(reads["approval"].endorsements)
    ]
    assert [(i.entity_key, i.tenant_id) for i in reads["items"]] == [(label, tenant)]
    assert list(reads["item_counts"].values()) == [1]
    assert [t.user for t in reads["tokens"]] == [f"user_{label}"]
    assert {e.tenant_id for e in reads["events"]} == {tenant}
    # metadata 4, KPI 4, business rule 1, glossary 1, an endorsement, a change set rejected
    assert len(reads["events"]) == 12
    assert all(a["tenant_id"] == tenant for a in reads["approvals"])
    with uow:
        [last] = uow.entities.bound_tables(Tier.TIER1, None, 10)[-1:]
        bound = uow.entities.bound_on_tables(Tier.TIER1, None, last)
    assert {(e.tenant_id, e.canonical_key) for e in bound} == {(A, KEY), (B, KEY)}
    other = B if tenant == A else A
    with uow:
        assert uow.approvals.get(other, reads["approval"].id) is None
        assert uow.approvals.get(tenant, reads["approval"].id) is not None
