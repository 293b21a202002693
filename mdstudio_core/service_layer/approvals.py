"""The approval workflow: every rule about who may change the catalog, and how, lives here.

A change is a request (`submit`); a second person holding the required role decides it
(`approve` / `reject`), or its author withdraws it (`cancel`). Approving applies the change, sets
the status and appends the events in one transaction, so the catalog and the event stream can
never disagree. The CLI and the HTTP API both call these functions; neither re-implements a rule.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from mdstudio_core.adapters.repositories import entity_state
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, field_path
from mdstudio_core.domain.events import NewEvent, validate_event
from mdstudio_core.domain.model import (
    KEY_FIELD,
    PAYLOAD_MODELS,
    STRUCTURAL_FIELDS,
    TERM_PATTERN,
    Approval,
    ApprovalRequest,
    ApprovalStatus,
    Binding,
    EntityStatus,
    EntityType,
    Identity,
    Lane,
    Tier,
)
from mdstudio_core.service_layer.catalog import check_page
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

# Who approves what, unless a tenant overrides it (`set_policy`). Overrides may name a tier or
# "*" for every tier of a lane; the most specific one wins.
DEFAULT_REQUIRED_ROLE: dict[Lane, str] = {
    Lane.KERNEL: "kernel_owner",
    Lane.GOVERNED: "metadata_steward",
    Lane.DRAFT: "metadata_steward",
}
# tier1 is the kernel's: stewards' governed lane may not change it.
ALLOWED_LANES: dict[Tier, frozenset[Lane]] = {
    Tier.TIER1: frozenset({Lane.KERNEL, Lane.DRAFT}),
    Tier.TIER2: frozenset(Lane),
    Tier.TIER3: frozenset(Lane),
}
# Changing who approves is itself privileged.
POLICY_ADMIN_ROLE = "tenant_admin"
# Entity types whose approval announces the entity's new state, and the event prefix used.
ENTITY_EVENT_PREFIX: dict[EntityType, str] = {
    EntityType.GLOBAL_METADATA: "metadata",
    EntityType.KPI: "kpi",
}
PROFILED_TIERS: dict[Tier, str] = {Tier.TIER1: "high", Tier.TIER2: "normal"}


def required_role(lane: Lane, tier: Tier, overrides: Mapping[tuple[str, str], str]) -> str:
    """The role a decider must hold for a request on `lane` at `tier`."""
    return (
        overrides.get((lane.value, tier.value))
        or overrides.get((lane.value, "*"))
        or DEFAULT_REQUIRED_ROLE[lane]
    )


def validate_request(raw: Mapping[str, Any]) -> tuple[ApprovalRequest, dict[str, Any]]:
    """Parse a submitted request; return it with the entity's normalised new state.

    Raises `InvalidInput` naming the first offending field (e.g. `payload.binding.columns[0].name`).
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput("the request must be a JSON object", field="request")
    _check_no_nul(raw, "")
    try:
        request = ApprovalRequest.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    if request.lane not in ALLOWED_LANES[request.tier]:
        raise InvalidInput(
            f"{request.tier.value} changes go through the "
            f"{' or '.join(sorted(lane.value for lane in ALLOWED_LANES[request.tier]))} lane",
            field="lane",
        )
    model = PAYLOAD_MODELS[request.entity_type]
    try:
        payload: BaseModel = model.model_validate(request.payload)
    except ValidationError as exc:
        raise _invalid(exc, prefix="payload") from exc

    key_field = KEY_FIELD[request.entity_type]
    payload_key = getattr(payload, key_field)
    if request.entity_type is EntityType.GLOSSARY:
        entity_key = request.entity_key or payload_key
        _check_glossary_key(entity_key)
    else:
        if request.entity_key is not None and request.entity_key != payload_key:
            raise InvalidInput(
                f"does not match payload.{key_field} ({payload_key!r})", field="entity_key"
            )
        entity_key = payload_key
    payload_tier = getattr(payload, "tier", request.tier)
    if payload_tier != request.tier:
        raise InvalidInput(
            f"{payload_tier.value} does not match the request's tier {request.tier.value}",
            field="payload.tier",
        )

    state = payload.model_dump(mode="json", by_alias=True)
    if isinstance(getattr(payload, "binding", None), Binding):
        state["binding"] = payload.binding.to_json()  # type: ignore[attr-defined]
    state["canonical_key"] = entity_key
    state["tier"] = request.tier.value
    return request.model_copy(update={"entity_key": entity_key}), state


def submit(engine: Engine, identity: Identity, raw: Mapping[str, Any]) -> Approval:
    """Record a pending request, with the required role and a snapshot of the live entity."""
    request, state = validate_request(raw)
    assert request.entity_key is not None
    with UnitOfWork(engine) as uow:
        live = uow.entities.get(request.entity_type, identity.tenant_id, request.entity_key)
        approval = Approval(
            id=uuid.uuid4(),
            tenant_id=identity.tenant_id,
            entity_type=request.entity_type,
            entity_id=uuid.UUID(live["id"]) if live else uuid.uuid4(),
            entity_key=request.entity_key,
            tier=request.tier,
            lane=request.lane,
            payload=state,
            current_state=live,
            status=ApprovalStatus.PENDING,
            decision_reason=None,
            requested_by=identity.user,
            decided_by=None,
            requested_at=_now(),
            decided_at=None,
            required_role=required_role(
                request.lane, request.tier, uow.policies.overrides(identity.tenant_id)
            ),
        )
        uow.approvals.add(approval)
        uow.commit()
    return approval


def approve(
    engine: Engine, identity: Identity, approval_id: uuid.UUID | str, reason: str | None = None
) -> Approval:
    """Apply the request, mark it approved and append its events, all in one transaction.

    The request row is locked first, so of two racing approvers one waits and then finds the
    request decided (a conflict); exactly one set of events is written. The entity is written
    only if it is still in the state the request was made against (optimistic check).
    """
    reason = _check_reason(reason)
    approval_id = parse_approval_id(approval_id)
    with UnitOfWork(engine) as uow:
        approval = _load_pending(uow, identity, approval_id)
        _check_may_decide(approval, identity)
        # The request was made against `current_state`; the write succeeds only if the live
        # entity is still exactly that (same version, or still absent), else it is stale.
        previous = approval.current_state
        now = _now()
        try:
            if previous is None:
                uow.entities.insert(
                    approval.entity_type,
                    identity.tenant_id,
                    approval.entity_id or uuid.uuid4(),
                    approval.payload,
                    identity.user,
                    now,
                )
            elif not uow.entities.update(
                approval.entity_type,
                identity.tenant_id,
                approval.entity_key,
                previous["version"],
                approval.payload,
                identity.user,
                now,
            ):
                raise Conflict(_stale_message(approval))
        except IntegrityError as exc:  # the entity was created after the request was made
            raise Conflict(_stale_message(approval)) from exc
        decided = _decide(uow, approval, ApprovalStatus.APPROVED, identity.user, now, reason)
        version = previous["version"] + 1 if previous else 1
        uow.events.append(_approval_events(decided, previous, version, now))
        uow.commit()
    return decided


def reject(
    engine: Engine, identity: Identity, approval_id: uuid.UUID | str, reason: str
) -> Approval:
    """Turn the request down; the reason is mandatory so the requester learns why."""
    reason = _check_reason(reason)
    if not reason:
        raise InvalidInput("a reason is required to reject a request", field="reason")
    approval_id = parse_approval_id(approval_id)
    with UnitOfWork(engine) as uow:
        approval = _load_pending(uow, identity, approval_id)
        _check_may_decide(approval, identity)
        now = _now()
        decided = _decide(uow, approval, ApprovalStatus.REJECTED, identity.user, now, reason)
        uow.events.append([_decision_event("approval.rejected", decided, now)])
        uow.commit()
    return decided


def cancel(
    engine: Engine, identity: Identity, approval_id: uuid.UUID | str, reason: str | None = None
) -> Approval:
    """Withdraw one's own pending request."""
    reason = _check_reason(reason)
    approval_id = parse_approval_id(approval_id)
    with UnitOfWork(engine) as uow:
        approval = _load_pending(uow, identity, approval_id)
        if approval.requested_by != identity.user:
            raise Forbidden(f"only the requester ({approval.requested_by}) may cancel this request")
        now = _now()
        decided = _decide(uow, approval, ApprovalStatus.CANCELLED, identity.user, now, reason)
        uow.events.append([_decision_event("approval.cancelled", decided, now)])
        uow.commit()
    return decided


def get_approval(engine: Engine, identity: Identity, approval_id: uuid.UUID | str) -> Approval:
    approval_id = parse_approval_id(approval_id)
    with UnitOfWork(engine) as uow:
        approval = uow.approvals.get(identity.tenant_id, approval_id)
    if approval is None:
        raise NotFound(f"approval {approval_id} not found")
    return approval


def list_approvals(
    engine: Engine,
    identity: Identity,
    *,
    status: ApprovalStatus | None = None,
    entity_type: EntityType | None = None,
    tier: Tier | None = None,
    lane: Lane | None = None,
    entity_key: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Approval]:
    """The tenant's requests, newest first (the approver's inbox with `status=pending`)."""
    check_page(limit, offset, "offset")
    with UnitOfWork(engine) as uow:
        return uow.approvals.list(
            identity.tenant_id,
            status=status,
            entity_type=entity_type,
            tier=tier,
            lane=lane,
            entity_key=entity_key,
            limit=limit,
            offset=offset,
        )


def policy(engine: Engine, identity: Identity) -> dict[str, dict[str, str]]:
    """The effective required role for every lane and tier of the caller's tenant."""
    with UnitOfWork(engine) as uow:
        overrides = uow.policies.overrides(identity.tenant_id)
    return {
        lane.value: {tier.value: required_role(lane, tier, overrides) for tier in Tier}
        for lane in Lane
    }


def set_policy(
    engine: Engine, identity: Identity, lane: Lane, tier: Tier | None, role: str
) -> dict[str, dict[str, str]]:
    """Override who approves `lane` (at `tier`, or every tier when None) for the tenant.

    Applies to requests submitted from now on; pending ones keep the role they were given.
    """
    if POLICY_ADMIN_ROLE not in identity.roles:
        raise Forbidden(f"changing the approval policy requires the {POLICY_ADMIN_ROLE} role")
    role = role.strip()
    if not role or len(role) > 100 or not role.replace("_", "").replace("-", "").isalnum():
        raise InvalidInput("must be a role name (letters, digits, _ or -)", field="required_role")
    with UnitOfWork(engine) as uow:
        uow.policies.set(
            identity.tenant_id, lane, tier.value if tier else "*", role, identity.user, _now()
        )
        uow.commit()
    return policy(engine, identity)


def parse_approval_id(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise InvalidInput("not a valid approval id (a UUID)", field="approval_id") from exc


# -- rules ---------------------------------------------------------------------------------


def _load_pending(uow: UnitOfWork, identity: Identity, approval_id: uuid.UUID) -> Approval:
    """The request, locked; another tenant's request is reported as not found."""
    approval = uow.approvals.get(identity.tenant_id, approval_id, for_update=True)
    if approval is None:
        raise NotFound(f"approval {approval_id} not found")
    if approval.status is not ApprovalStatus.PENDING:
        raise Conflict(
            f"approval {approval_id} is already {approval.status.value}"
            + (f" by {approval.decided_by}" if approval.decided_by else "")
        )
    return approval


def _check_may_decide(approval: Approval, identity: Identity) -> None:
    """Four-eyes, then role: the requester never decides their own request."""
    if approval.requested_by == identity.user:
        raise Forbidden(
            "four-eyes rule: the requester may not decide their own request (cancel it instead)"
        )
    if approval.required_role not in identity.roles:
        raise Forbidden(
            f"role {approval.required_role} is required to decide this request "
            f"(you have: {', '.join(sorted(identity.roles)) or 'none'})"
        )


def _stale_message(approval: Approval) -> str:
    return (
        f"stale request: {approval.entity_type.value} {approval.entity_key} changed after "
        f"approval {approval.id} was submitted; submit a new request against the current state"
    )


def _decide(
    uow: UnitOfWork,
    approval: Approval,
    status: ApprovalStatus,
    actor: str,
    now: dt.datetime,
    reason: str | None,
) -> Approval:
    if not uow.approvals.decide(approval.id, status, actor, now, reason):
        raise Conflict(f"approval {approval.id} was decided concurrently")
    return dataclasses.replace(
        approval, status=status, decided_by=actor, decided_at=now, decision_reason=reason
    )


def _approval_events(
    approval: Approval, previous: dict[str, Any] | None, version: int, now: dt.datetime
) -> list[NewEvent]:
    """The events of an approval, in order (see the README's event table)."""
    events: list[NewEvent] = []
    prefix = ENTITY_EVENT_PREFIX.get(approval.entity_type)
    if prefix:
        new_state = approval.payload
        old_state = entity_state(previous) if previous else {}
        changed = sorted(
            field
            for field in set(new_state) | set(old_state)
            if new_state.get(field) != old_state.get(field)
        )
        structural = previous is None or bool(
            set(changed) & STRUCTURAL_FIELDS[approval.entity_type]
        )
        events.append(
            _event(
                f"{prefix}.approved",
                approval,
                now,
                {
                    "approval_id": approval.id,
                    "canonical_key": approval.entity_key,
                    "tier": approval.tier,
                    "version": version,
                    "state": new_state,
                },
            )
        )
        events.append(
            _event(
                f"{prefix}.changed",
                approval,
                now,
                {
                    "canonical_key": approval.entity_key,
                    "change_type": "APPROVAL",
                    "changed_fields": changed,
                    "structural": structural,
                    "previous_version": previous["version"] if previous else None,
                    "version": version,
                },
            )
        )
        if (
            approval.entity_type is EntityType.GLOBAL_METADATA
            and approval.tier in PROFILED_TIERS
            and structural
            and new_state.get("binding")
            and new_state.get("status") != EntityStatus.DEPRECATED.value
        ):
            events.append(
                _event(
                    "metadata.profile.due",
                    approval,
                    now,
                    {
                        "canonical_key": approval.entity_key,
                        "tier": approval.tier,
                        "reason": "STRUCTURAL",
                        "priority": PROFILED_TIERS[approval.tier],
                        "approval_id": approval.id,
                        "version": version,
                        "binding": new_state["binding"],
                    },
                )
            )
    events.append(_decision_event("approval.approved", approval, now))
    return events


def _decision_event(event_type: str, approval: Approval, now: dt.datetime) -> NewEvent:
    return _event(
        event_type,
        approval,
        now,
        {
            "approval_id": approval.id,
            "entity_type": approval.entity_type,
            "entity_key": approval.entity_key,
            "tier": approval.tier,
            "lane": approval.lane,
            "required_role": approval.required_role,
            "requested_by": approval.requested_by,
            "decided_by": approval.decided_by,
            "reason": approval.decision_reason,
        },
    )


def _event(
    event_type: str, approval: Approval, now: dt.datetime, payload: dict[str, Any]
) -> NewEvent:
    return NewEvent(
        type=event_type,
        tenant_id=approval.tenant_id,
        entity_type=approval.entity_type,
        entity_key=approval.entity_key,
        correlation_id=approval.id,
        actor=approval.decided_by or approval.requested_by,
        occurred_at=now,
        payload=validate_event(event_type, payload),
    )


def _check_reason(reason: str | None) -> str | None:
    """A decision note, stripped; bounded and free of NUL (PostgreSQL text cannot hold it)."""
    reason = (reason or "").strip() or None
    if reason is not None:
        if len(reason) > 10_000:
            raise InvalidInput("must be at most 10000 characters", field="reason")
        _check_no_nul(reason, "reason")
    return reason


def _check_no_nul(value: Any, path: str) -> None:
    """Refuse NUL characters anywhere in a request: PostgreSQL can store them neither in text
    nor in JSONB, so they would fail late, as a database error, instead of as invalid input."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput("must not contain NUL characters", field=path or "request")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_no_nul(key, path or "request")
            _check_no_nul(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_no_nul(item, f"{path}[{index}]")


def _check_glossary_key(key: str) -> None:
    """A glossary key names the entry everywhere (Dagster partitions too, where `..` would
    read as a range)."""
    if not re.fullmatch(TERM_PATTERN, key) or len(key) > 200 or ".." in key:
        raise InvalidInput(
            "a glossary key is a term: letters, digits, spaces and . _ ' & / ( ) + - (no '..')",
            field="entity_key",
        )


def _invalid(exc: ValidationError, prefix: str | None = None) -> InvalidInput:
    """Turn pydantic's errors into one message naming each field, e.g.
    `payload.binding.columns[0].name: String should match pattern ...`."""
    messages = []
    for error in exc.errors():
        messages.append((field_path(error["loc"], prefix or "") or "request", error["msg"]))
    first_field = messages[0][0]
    detail = "; ".join(f"{field}: {message}" for field, message in messages[:5])
    return InvalidInput(detail.removeprefix(f"{first_field}: "), field=first_field)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
