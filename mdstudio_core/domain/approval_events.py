"""What a decided request announces: its decision event, and for an approval the entity's new
state, its change, any lineage change and a profile that is now due, in order (see the README's
event table)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from mdstudio_core.domain.events import (
    APPROVED_EVENTS,
    CHANGED_EVENTS,
    EVENT_SCHEMAS,
    ApprovalEndorsed,
    EntityApproved,
    EntityChanged,
    EventPayload,
    EventType,
    KpiChanged,
    LineageChanged,
    NewEvent,
    ProfileDue,
    validate_event,
)
from mdstudio_core.domain.lineage import input_changes
from mdstudio_core.domain.model import (
    EntityStatus,
    EntityType,
    Identity,
    Priority,
    ProfileReason,
    Tier,
)

if TYPE_CHECKING:
    from mdstudio_core.domain.approvals import Approval

# Tiers whose structural changes ask for a profile, and how urgently.
PROFILED_TIERS: dict[Tier, Priority] = {Tier.TIER1: Priority.HIGH, Tier.TIER2: Priority.NORMAL}


def approval_events(approval: Approval, now: dt.datetime) -> list[NewEvent]:
    """The events of an approval, in order (see the README's event table)."""
    events: list[NewEvent] = []
    approved_event = APPROVED_EVENTS.get(approval.entity_type)
    if approved_event:
        structural = approval.is_structural()
        events.append(
            request_event(
                approval,
                approved_event,
                now,
                EntityApproved(
                    approval_id=approval.id,
                    canonical_key=approval.entity_key,
                    tier=approval.tier,
                    version=approval.new_version,
                    state=approval.payload,
                ),
            )
        )
        changed = EntityChanged(
            canonical_key=approval.entity_key,
            change_type="APPROVAL",
            changed_fields=approval.changed_fields(),
            structural=structural,
            previous_version=approval.base_version,
            version=approval.new_version,
        )
        lineage = None
        if approval.entity_type is EntityType.KPI:
            added, removed = input_changes(
                approval.current_state.get("depends_on") if approval.current_state else None,
                approval.payload.get("depends_on") or [],
            )
            changed = KpiChanged(**changed.model_dump(), added_inputs=added, removed_inputs=removed)
            if added or removed:
                lineage = LineageChanged(
                    canonical_key=approval.entity_key, added_inputs=added, removed_inputs=removed
                )
        events.append(request_event(approval, CHANGED_EVENTS[approval.entity_type], now, changed))
        if lineage is not None:
            events.append(request_event(approval, EventType.LINEAGE_CHANGED, now, lineage))
        if (
            approval.entity_type is EntityType.GLOBAL_METADATA
            and approval.tier in PROFILED_TIERS
            and structural
            and approval.payload.get("binding")
            and approval.payload.get("status") != EntityStatus.DEPRECATED.value
        ):
            events.append(
                request_event(
                    approval,
                    EventType.PROFILE_DUE,
                    now,
                    ProfileDue(
                        canonical_key=approval.entity_key,
                        tier=approval.tier,
                        reason=ProfileReason.STRUCTURAL,
                        priority=PROFILED_TIERS[approval.tier],
                        approval_id=approval.id,
                        version=approval.new_version,
                        binding=approval.payload["binding"],
                    ),
                )
            )
    events.append(
        decision_event(
            approval,
            EventType.APPROVAL_APPROVED,
            now,
            endorsed_by=[e.user for e in approval.endorsements],
        )
    )
    return events


def decision_event(
    approval: Approval, event_type: EventType, now: dt.datetime, **extra: Any
) -> NewEvent:
    """The event of a decision (`approval.approved`, `.rejected`, `.cancelled`): the request,
    who decided it and why; one shape, a schema each."""
    decision = EVENT_SCHEMAS[event_type](
        **request_fields(approval),
        decided_by=approval.decided_by,
        reason=approval.decision_reason,
        **extra,
    )
    return request_event(approval, event_type, now, decision)


def request_fields(approval: Approval) -> dict[str, Any]:
    """What every event about a request says of it: which, whose, and who decides it (the
    fields its schemas share)."""
    return {
        "approval_id": approval.id,
        "entity_type": approval.entity_type,
        "entity_key": approval.entity_key,
        "tier": approval.tier,
        "lane": approval.lane,
        "required_role": approval.required_role,
        "requested_by": approval.requested_by,
    }


def request_event(
    approval: Approval,
    event_type: EventType,
    now: dt.datetime,
    payload: EventPayload,
    actor: str | None = None,
) -> NewEvent:
    """An event about the request, by `actor` (else whoever acted on it last), validated
    against its schema."""
    return NewEvent(
        type=event_type,
        tenant_id=approval.tenant_id,
        entity_type=approval.entity_type,
        entity_key=approval.entity_key,
        correlation_id=approval.id,
        actor=actor or approval.decided_by or approval.requested_by,
        occurred_at=now,
        payload=validate_event(event_type, payload),
    )


def endorsement_event(
    endorsed: Approval, decider: Identity, now: dt.datetime, reason: str | None
) -> NewEvent:
    """The `approval.endorsed` event of `decider`'s endorsement, now on `endorsed`."""
    return request_event(
        endorsed,
        EventType.APPROVAL_ENDORSED,
        now,
        ApprovalEndorsed(
            **request_fields(endorsed),
            endorsed_by=decider.user,
            endorsements=len(endorsed.endorsements),
            required_approvals=endorsed.required_approvals,
            reason=reason,
        ),
        actor=decider.user,
    )
