"""Two-person rules: a policy cell can ask for more than one approver. Each approval before the
last is an endorsement (the aggregate decides, `Approval.approve`); these commands store an
endorsement and set how many approvers a cell needs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from mdstudio_core.domain import clock
from mdstudio_core.domain.approval_policy import (
    check_approvals_count,
    check_policy_change,
    effective_approvals,
    effective_policy,
)
from mdstudio_core.domain.approvals import Approval, Endorsement
from mdstudio_core.domain.errors import Conflict
from mdstudio_core.domain.events import NewEvent
from mdstudio_core.domain.model import Identity, Lane, Tier
from mdstudio_core.service_layer.unit_of_work import UnitOfWork


def record_endorsement(uow: UnitOfWork, endorsed: Approval, events: list[NewEvent]) -> Approval:
    """Store the newest endorsement of `endorsed` (still pending) and its `approval.endorsed`
    event, and commit, in the caller's open unit of work (the request's row locked). The
    store refuses a second endorsement by the same approver even if two race."""
    endorsement = endorsed.endorsements[-1]
    try:
        uow.approvals.endorse(endorsed, endorsement)
    except IntegrityError as exc:
        raise Conflict(f"{endorsement.user} has already endorsed approval {endorsed.id}") from exc
    uow.events.append(events)
    uow.commit()
    return endorsed


def endorsements(
    uow: UnitOfWork, identity: Identity, approval_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[Endorsement, ...]]:
    """Who endorsed each of these requests of the caller's tenant so far (the inbox's)."""
    with uow:
        return uow.approvals.endorsements_of(identity.tenant_id, approval_ids)


def set_policy(
    uow: UnitOfWork, identity: Identity, lane: Lane, tier: Tier | None, role: str, approvals: int
) -> dict[str, dict[str, str]]:
    """Override who approves `lane` (at `tier`, or every tier when None) and how many of them
    must, in one transaction; return the effective roles. Applies to requests submitted from
    now on: pending ones keep the role and count they were given."""
    approvals = check_approvals_count(approvals)
    role = check_policy_change(identity, role)
    cell = tier.value if tier else "*"
    with uow:
        uow.policies.set(identity.tenant_id, lane, cell, role, identity.user, clock.now())
        uow.policies.set_approvals(identity.tenant_id, lane, cell, approvals)
        effective = effective_policy(uow.policies.overrides(identity.tenant_id))
        uow.commit()
    return effective


def policy_approvals(uow: UnitOfWork, identity: Identity) -> dict[str, dict[str, int]]:
    """How many approvers a request on each lane and tier of the caller's tenant needs."""
    with uow:
        return effective_approvals(uow.policies.approval_counts(identity.tenant_id))
