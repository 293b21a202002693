"""Events of the outbox (`mdm_event`): the contract between the catalog and everything that reacts.

Each event type has a payload schema; `validate_event` runs before every insert so a consumer (the
Dagster sensor, the HTTP event stream) can rely on the shape of what it reads.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from mdstudio_core.domain.model import EntityType, Lane, Priority, ProfileReason, Tier, Trigger


class _EventPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ApprovalDecision(_EventPayload):
    approval_id: uuid.UUID
    entity_type: EntityType
    entity_key: str
    tier: Tier
    lane: Lane
    required_role: str
    requested_by: str
    decided_by: str


class ApprovalApproved(_ApprovalDecision):
    reason: str | None = None


class ApprovalRejected(_ApprovalDecision):
    reason: str


class ApprovalCancelled(_ApprovalDecision):
    reason: str | None = None


class EntityApproved(_EventPayload):
    """`metadata.approved` / `kpi.approved`: the entity's new state is live."""

    approval_id: uuid.UUID
    canonical_key: str
    tier: Tier
    version: int
    state: dict[str, Any]


class EntityChanged(_EventPayload):
    """`metadata.changed` / `kpi.changed`: what changed, and whether it was structural."""

    canonical_key: str
    change_type: Literal["APPROVAL"]
    changed_fields: list[str]
    structural: bool
    previous_version: int | None
    version: int


class ProfileDue(_EventPayload):
    """`metadata.profile.due`: the binding changed shape, so its data must be profiled again."""

    canonical_key: str
    tier: Literal[Tier.TIER1, Tier.TIER2]
    reason: Literal[ProfileReason.STRUCTURAL]
    priority: Literal[Priority.HIGH, Priority.NORMAL]
    approval_id: uuid.UUID
    version: int
    binding: dict[str, Any]


class ProfileRequested(_EventPayload):
    """`metadata.profile.requested`: a person asked for a profile (`mdstudio profiles run`)."""

    canonical_key: str
    trigger: Literal[Trigger.MANUAL]
    force: bool
    requested_by: str


EVENT_SCHEMAS: dict[str, type[_EventPayload]] = {
    "metadata.approved": EntityApproved,
    "metadata.changed": EntityChanged,
    "metadata.profile.due": ProfileDue,
    "metadata.profile.requested": ProfileRequested,
    "kpi.approved": EntityApproved,
    "kpi.changed": EntityChanged,
    "approval.approved": ApprovalApproved,
    "approval.rejected": ApprovalRejected,
    "approval.cancelled": ApprovalCancelled,
}


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended to the outbox (the store assigns `id`)."""

    type: str
    tenant_id: uuid.UUID
    entity_type: EntityType
    entity_key: str
    correlation_id: uuid.UUID
    actor: str
    occurred_at: dt.datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class Event(NewEvent):
    """An event read back from the outbox; `id` increases in commit order."""

    id: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "tenant_id": str(self.tenant_id),
            "entity_type": self.entity_type.value,
            "entity_key": self.entity_key,
            "correlation_id": str(self.correlation_id),
            "actor": self.actor,
            "occurred_at": self.occurred_at.isoformat(),
            "payload": self.payload,
        }


def validate_event(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Check a payload against its event type's schema; return it in its JSON form.

    A failure here is a bug in the emitter, never user input, so it raises `ValueError`
    and the surrounding transaction rolls back.
    """
    schema = EVENT_SCHEMAS.get(event_type)
    if schema is None:
        raise ValueError(f"unknown event type {event_type!r}")
    try:
        return schema.model_validate(payload).model_dump(mode="json")
    except ValidationError as exc:
        raise ValueError(f"invalid {event_type} payload: {exc}") from exc
