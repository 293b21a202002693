"""The approval commands: load the request, let the aggregate decide (its rules are in
`mdstudio_core.domain.approvals`), and store the decision, the entity and the events in one
transaction, so the catalog and the event stream can never disagree. The CLI and the HTTP API
both call these functions; neither re-implements a rule.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError

from mdstudio_core.adapters import warehouse
from mdstudio_core.config import Settings
from mdstudio_core.domain import clock
from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.approval_policy import check_policy_change, effective_policy
from mdstudio_core.domain.approval_requests import (
    check_reason,
    parse_approval_id,
    rejection_reason,
    validate_request,
)
from mdstudio_core.domain.approvals import Approval, ApprovalListing
from mdstudio_core.domain.errors import Conflict, InvalidInput, NotFound
from mdstudio_core.domain.events import NewEvent
from mdstudio_core.domain.model import (
    ApprovalStatus,
    Binding,
    EntityStatus,
    EntityType,
    Identity,
    Lane,
    LiveEntity,
    Tier,
)
from mdstudio_core.service_layer import lineage, two_person
from mdstudio_core.service_layer.catalog import check_page
from mdstudio_core.service_layer.unit_of_work import UnitOfWork


def submit(
    uow: UnitOfWork, identity: Identity, raw: Mapping[str, Any], settings: Settings
) -> Approval:
    """Record a pending request, with the required role and a snapshot of the live entity.

    `settings` bound the payload and say which warehouse sources and schemas the tenant may
    bind."""
    request, state = validate_request(raw, settings.max_payload_bytes)  # before the store
    if state.get("binding"):
        binding = Binding.model_validate(state["binding"])
        check_source_access(settings, identity, binding)
        check_incremental(settings, binding)
    assert request.entity_key is not None
    with uow:
        live = uow.entities.get(request.entity_type, identity.tenant_id, request.entity_key)
        approval = Approval.submit(
            request,
            state,
            identity,
            live,
            uow.policies.overrides(identity.tenant_id),
            clock.now(),
            breaks_tier1_kpi=lineage.breaks_tier1_kpi(uow, identity.tenant_id, live, state),
            approval_counts=uow.policies.approval_counts(identity.tenant_id),
        )
        uow.approvals.add(approval)
        uow.commit()
    return approval


def approve(
    uow: UnitOfWork,
    identity: Identity,
    approval_id: uuid.UUID | str,
    reason: str | None,
    settings: Settings,
) -> Approval:
    """Apply the request, mark it approved and append its events, all in one transaction.

    The request row is locked first, so of two racing approvers one waits and then finds the
    request decided (a conflict); exactly one set of events is written. The role is judged
    again against the live state (`Approval.judged_again`). The entity is written with a
    compare-and-set on its version, so a change that slipped in after the aggregate's
    staleness check is a conflict too, never an overwrite. `settings` judge the trust of the
    KPIs the change reaches. A request that needs more approvers than have approved is endorsed
    instead (it stays pending); a change set is applied whole (`change_sets.approve_loaded`).
    """
    reason = check_reason(reason)
    approval_id = parse_approval_id(approval_id)
    with uow:
        approval = _load(uow, identity, approval_id)
        if approval.entity_type is EntityType.CHANGE_SET:
            from mdstudio_core.service_layer import change_sets  # it builds on this module

            return change_sets.approve_loaded(uow, identity, approval, reason, settings)
        live = _live(uow, approval)
        decided, events = _judged_again(uow, approval, live).approve(
            identity, live, clock.now(), reason
        )
        if decided.status is ApprovalStatus.PENDING:  # an endorsement: more approvers needed
            return two_person.record_endorsement(uow, decided, events)
        _apply(uow, decided)
        if decided.binding_change() is not None:  # its KPIs' inputs changed: trust again
            lineage.refresh_dependents(uow, settings, identity.tenant_id, [decided.entity_key])
        elif decided.entity_type is EntityType.KPI:  # a new or changed KPI: its first trust
            kpi = uow.entities.get(EntityType.KPI, identity.tenant_id, decided.entity_key)
            if kpi is not None and kpi.status is EntityStatus.ACTIVE:
                lineage.record_trust(uow, settings, identity.tenant_id, [kpi])
        _record(uow, decided, events)
    return decided


def reject(
    uow: UnitOfWork, identity: Identity, approval_id: uuid.UUID | str, reason: str | None
) -> Approval:
    """Turn the request down (the role judged again, as for approving); the reason is
    mandatory so the requester learns why."""
    reason = rejection_reason(reason)
    approval_id = parse_approval_id(approval_id)
    with uow:
        approval = _load(uow, identity, approval_id)
        live = _live(uow, approval)
        decided, events = _judged_again(uow, approval, live).reject(identity, clock.now(), reason)
        _record(uow, decided, events)
    return decided


def cancel(
    uow: UnitOfWork, identity: Identity, approval_id: uuid.UUID | str, reason: str | None = None
) -> Approval:
    """Withdraw one's own pending request."""
    reason = check_reason(reason)
    approval_id = parse_approval_id(approval_id)
    with uow:
        decided, events = _load(uow, identity, approval_id).cancel(identity, clock.now(), reason)
        _record(uow, decided, events)
    return decided


def get_approval(uow: UnitOfWork, identity: Identity, approval_id: uuid.UUID | str) -> Approval:
    approval_id = parse_approval_id(approval_id)
    with uow:
        approval = uow.approvals.get(identity.tenant_id, approval_id)
    if approval is None:
        raise NotFound(f"approval {approval_id} not found")
    return approval


def get_judged(uow: UnitOfWork, identity: Identity, approval_id: uuid.UUID | str) -> Approval:
    """One request with the role a decision on it needs now (`Approval.judged_again`): whom
    its evidence is for."""
    approval_id = parse_approval_id(approval_id)
    with uow:
        approval = uow.approvals.get(identity.tenant_id, approval_id)
        if approval is None:
            raise NotFound(f"approval {approval_id} not found")
        return _judged_again(uow, approval, _live(uow, approval))


def show_approval(
    uow: UnitOfWork, identity: Identity, approval_id: uuid.UUID | str, settings: Settings
) -> dict[str, Any]:
    """One request in full and its `impact`: the KPIs that depend on the field whose binding
    it changes, deprecates or unbinds, with their tier and trust (so the approver sees what
    breaks before deciding). A change set shows its items instead (`change_sets.show_loaded`)."""
    approval = get_approval(uow, identity, approval_id)
    if approval.entity_type is EntityType.CHANGE_SET:
        from mdstudio_core.service_layer import change_sets  # it builds on this module

        return change_sets.show_loaded(uow, settings, approval)
    return {
        **{f.name: getattr(approval, f.name) for f in dataclasses.fields(approval)},
        "impact": lineage.approval_impact(uow, settings, approval),
    }


def list_approvals(
    uow: UnitOfWork, identity: Identity, wanted: ApprovalFilter
) -> list[ApprovalListing]:
    """The caller's tenant's requests as `wanted` filters them (the approver's inbox with
    `status=pending`; the console's with `decidable_by` the caller)."""
    check_page(wanted.limit, wanted.offset, "offset")
    with uow:
        return uow.approvals.list(identity.tenant_id, wanted)


def policy(uow: UnitOfWork, identity: Identity) -> dict[str, dict[str, str]]:
    """The effective required role for every lane and tier of the caller's tenant."""
    with uow:
        return effective_policy(uow.policies.overrides(identity.tenant_id))


def set_policy(
    uow: UnitOfWork, identity: Identity, lane: Lane, tier: Tier | None, role: str
) -> dict[str, dict[str, str]]:
    """Override who approves `lane` (at `tier`, or every tier when None) for the tenant, and
    return the effective policy.

    Applies to requests submitted from now on; pending ones keep the role they were given,
    unless the live state makes them stricter when they are decided (`Approval.judged_again`).
    """
    role = check_policy_change(identity, role)
    with uow:
        uow.policies.set(
            identity.tenant_id, lane, tier.value if tier else "*", role, identity.user, clock.now()
        )
        effective = effective_policy(uow.policies.overrides(identity.tenant_id))
        uow.commit()
    return effective


def check_source_access(settings: Settings, identity: Identity, binding: Binding) -> None:
    """Refuse a binding to a source, schema or table the operator does not open to the
    caller's tenant (and any system schema or table)."""
    refusal = settings.source_access(binding.source).refusal(binding, identity.tenant_id)
    if refusal is not None:
        field, reason = refusal
        raise InvalidInput(reason, field=field)


def check_incremental(settings: Settings, binding: Binding) -> None:
    """Refuse `binding.incremental` naming a column its table lacks or one that cannot order
    the rows, when the source can tell now. A source not configured here or not reachable
    cannot: profiling checks again and fails naming the same field."""
    if binding.incremental is None or settings.source_url(binding.source) is None:
        return
    try:
        warehouse.check_incremental(warehouse.get_engine(binding.source, settings.sources), binding)
    except warehouse.InvalidIncremental as exc:
        raise InvalidInput(exc.reason, field=f"payload.{exc.field}") from exc
    except (warehouse.ProfileError, DBAPIError):
        return


def _load(uow: UnitOfWork, identity: Identity, approval_id: uuid.UUID) -> Approval:
    """The request, its row locked; another tenant's request is reported as not found."""
    approval = uow.approvals.get(identity.tenant_id, approval_id, for_update=True)
    if approval is None:
        raise NotFound(f"approval {approval_id} not found")
    return approval


def _judged_again(uow: UnitOfWork, approval: Approval, live: LiveEntity | None) -> Approval:
    """`approval` with the role (and the approver count) the live state calls for, if
    stricter than the one it was given (in the caller's open unit of work); a change set by
    its items' live state (`change_sets.judged_again`)."""
    if approval.entity_type is EntityType.CHANGE_SET:
        from mdstudio_core.service_layer import change_sets  # it builds on this module

        return change_sets.judged_again(uow, approval).approval
    return approval.judged_again(
        live,
        uow.policies.overrides(approval.tenant_id),
        lineage.breaks_tier1_kpi(uow, approval.tenant_id, live, approval.payload),
        uow.policies.approval_counts(approval.tenant_id),
    )


def _live(uow: UnitOfWork, approval: Approval) -> LiveEntity | None:
    """The entity the request changes, as it is now (None: new; a change set changes many)."""
    if approval.entity_type is EntityType.CHANGE_SET:
        return None
    return uow.entities.get(approval.entity_type, approval.tenant_id, approval.entity_key)


def _apply(uow: UnitOfWork, approved: Approval) -> None:
    """Write the approved state: insert a new entity, or compare-and-set an existing one."""
    actor, at = approved.decided_by, approved.decided_at
    assert actor is not None and at is not None
    try:
        if approved.base_version is None:
            uow.entities.insert(
                approved.entity_type,
                approved.tenant_id,
                approved.entity_id or uuid.uuid4(),
                approved.payload,
                actor,
                at,
            )
            return
        written = uow.entities.update(
            approved.entity_type,
            approved.tenant_id,
            approved.entity_key,
            approved.base_version,
            approved.payload,
            actor,
            at,
        )
    except IntegrityError as exc:  # created by a concurrent approval since the check
        raise Conflict(approved.stale_message()) from exc
    if not written:
        raise Conflict(approved.stale_message())


def _record(uow: UnitOfWork, decided: Approval, events: list[NewEvent]) -> None:
    """Store the decision (compare-and-set on pending) and its events, and commit."""
    if not uow.approvals.record_decision(decided):
        raise Conflict(f"approval {decided.id} was decided concurrently")
    uow.events.append(events)
    uow.commit()
