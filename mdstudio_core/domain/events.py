"""Events of the outbox (`mdm_event`): the contract between the catalog and everything that reacts.

Every event type is a member of `EventType`, the one place its name is written, and has one
payload schema (`EVENT_SCHEMAS`). Producers build the schema and `validate_event` turns it into
the stored JSON before every insert; consumers (the Dagster sensors, the profile planner, the
incident rules) read it back typed with `read_payload`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mdstudio_core.domain.model import EntityType, Lane, Priority, ProfileReason, Tier, Trigger


class EventType(StrEnum):
    """Every event type of the outbox, as stored in `mdm_event.type`."""

    METADATA_APPROVED = "metadata.approved"
    METADATA_CHANGED = "metadata.changed"
    PROFILE_DUE = "metadata.profile.due"
    PROFILE_REQUESTED = "metadata.profile.requested"
    PROFILE_COMPLETED = "metadata.profile.completed"
    PROFILE_FAILED = "metadata.profile.failed"
    KPI_APPROVED = "kpi.approved"
    KPI_CHANGED = "kpi.changed"
    LINEAGE_CHANGED = "lineage.changed"
    KPI_QUALITY_IMPACTED = "kpi.quality.impacted"
    KPI_QUALITY_RECOVERED = "kpi.quality.recovered"
    APPROVAL_APPROVED = "approval.approved"
    APPROVAL_REJECTED = "approval.rejected"
    APPROVAL_CANCELLED = "approval.cancelled"
    APPROVAL_ENDORSED = "approval.endorsed"
    APPROVAL_OVERDUE = "approval.overdue"
    INCIDENT_OPENED = "quality.incident.opened"
    INCIDENT_ACKNOWLEDGED = "quality.incident.acknowledged"
    INCIDENT_RESOLVED = "quality.incident.resolved"
    EVENTS_REPLAYED = "events.replayed"


# The tenant of the deployment's own events (`events.replayed`): no tenant's stream shows them.
DEPLOYMENT_TENANT = uuid.UUID(int=0)


class DeploymentEntity(StrEnum):
    """What an event of the deployment itself, not of a tenant's catalog, is about."""

    CONSUMER = "CONSUMER"


def entity_kind(value: str) -> EntityType | DeploymentEntity:
    """An event's `entity_type` as stored: a catalog entity type, or the deployment's."""
    try:
        return EntityType(value)
    except ValueError:
        return DeploymentEntity(value)


class EventPayload(BaseModel):
    """The payload of one event type (see `EVENT_SCHEMAS`)."""

    model_config = ConfigDict(extra="forbid")


class _ApprovalRequest(EventPayload):
    """What every `approval.*` event says of its request (`approval_events.request_fields`)."""

    approval_id: uuid.UUID
    entity_type: EntityType
    entity_key: str
    tier: Tier
    lane: Lane
    required_role: str
    requested_by: str


class _ApprovalDecision(_ApprovalRequest):
    decided_by: str


class ApprovalApproved(_ApprovalDecision):
    reason: str | None = None
    # Who endorsed it before `decided_by` applied it (a policy asking for several approvers).
    endorsed_by: list[str] = []
    # Its number in its change set (the approval is the set's), when it is an item of one.
    item: int | None = None


class ApprovalRejected(_ApprovalDecision):
    reason: str


class ApprovalCancelled(_ApprovalDecision):
    reason: str | None = None


class ApprovalEndorsed(_ApprovalRequest):
    """`approval.endorsed`: an approver approved a request that needs more approvers than
    have approved so far; it stays pending."""

    endorsed_by: str
    endorsements: int
    required_approvals: int
    reason: str | None = None


class ApprovalOverdue(_ApprovalRequest):
    """`approval.overdue`: a request is still pending past its deadline (written once)."""

    requested_at: dt.datetime
    deadline: dt.datetime
    sla_hours: float


class EntityApproved(EventPayload):
    """`metadata.approved` / `kpi.approved`: the entity's new state is live."""

    approval_id: uuid.UUID
    canonical_key: str
    tier: Tier
    version: int
    state: dict[str, Any]


class EntityChanged(EventPayload):
    """`metadata.changed` / `kpi.changed`: what changed, and whether it was structural."""

    canonical_key: str
    change_type: Literal["APPROVAL"]
    changed_fields: list[str]
    structural: bool
    previous_version: int | None
    version: int


class KpiChanged(EntityChanged):
    """`kpi.changed`: as `metadata.changed`, and the inputs (`depends_on`) added and removed."""

    added_inputs: list[str] = []
    removed_inputs: list[str] = []


class LineageChanged(EventPayload):
    """`lineage.changed`: a KPI's inputs changed (written with its approval)."""

    canonical_key: str
    added_inputs: list[str]
    removed_inputs: list[str]


class _KpiQuality(EventPayload):
    canonical_key: str
    trust_score: float | None
    weakest_input: str | None
    threshold: float | None


class KpiImpacted(_KpiQuality):
    """`kpi.quality.impacted`: the KPI's trust fell below its tier's minimum."""


class KpiRecovered(_KpiQuality):
    """`kpi.quality.recovered`: its trust is back at the minimum plus the margin."""


class ProfileDue(EventPayload):
    """`metadata.profile.due`: the binding changed shape, so its data must be profiled again."""

    canonical_key: str
    tier: Literal[Tier.TIER1, Tier.TIER2]
    reason: Literal[ProfileReason.STRUCTURAL]
    priority: Literal[Priority.HIGH, Priority.NORMAL]
    approval_id: uuid.UUID
    version: int
    binding: dict[str, Any]


class ProfileRequested(EventPayload):
    """`metadata.profile.requested`: a person asked for a profile (`mdstudio profiles run`)."""

    canonical_key: str
    trigger: Literal[Trigger.MANUAL]
    force: bool
    requested_by: str
    full: bool = False


class ProfileCompleted(EventPayload):
    """`metadata.profile.completed`: a profile was saved (written with its `mdm_profile` row;
    `profile_id` is the idempotency key, so a retried run writes it once)."""

    canonical_key: str
    tier: Tier
    quality_score: float | None
    completeness: float | None
    uniqueness: float | None
    validity: float | None
    row_count: int
    profile_id: uuid.UUID
    run_id: str | None
    trigger: Trigger
    approval_id: uuid.UUID | None
    check_passed: bool
    threshold: float | None


class ProfileFailed(EventPayload):
    """`metadata.profile.failed`: the entity's table could not be profiled in a run."""

    canonical_key: str
    tier: Tier
    run_id: str | None
    error: str


class _IncidentTransition(EventPayload):
    incident_id: uuid.UUID
    canonical_key: str
    tier: Tier
    quality_score: float | None
    threshold: float | None
    profile_id: uuid.UUID | None
    actor: str
    run_id: str | None = None  # the profiling run that caused it, if one did


class IncidentOpened(_IncidentTransition):
    """`quality.incident.opened`: the entity failed its check often enough in a row."""

    previous_incident_id: uuid.UUID | None = None


class IncidentAcknowledged(_IncidentTransition):
    """`quality.incident.acknowledged`: someone is on it."""

    note: str | None = None


class IncidentResolved(_IncidentTransition):
    """`quality.incident.resolved`: recovered (score back above the line with the margin) or
    closed by a user."""

    reason: str


class EventsReplayed(EventPayload):
    """`events.replayed`: an operator moved a consumer back to handle a range of the outbox
    again (`mdstudio events replay`); the consumer's effects in that pass are keyed by this
    event's id."""

    consumer: str
    from_event_id: int
    to_event_id: int
    requested_by: str


EVENT_SCHEMAS: dict[EventType, type[EventPayload]] = {
    EventType.METADATA_APPROVED: EntityApproved,
    EventType.METADATA_CHANGED: EntityChanged,
    EventType.PROFILE_DUE: ProfileDue,
    EventType.PROFILE_REQUESTED: ProfileRequested,
    EventType.KPI_APPROVED: EntityApproved,
    EventType.KPI_CHANGED: KpiChanged,
    EventType.LINEAGE_CHANGED: LineageChanged,
    EventType.KPI_QUALITY_IMPACTED: KpiImpacted,
    EventType.KPI_QUALITY_RECOVERED: KpiRecovered,
    EventType.APPROVAL_APPROVED: ApprovalApproved,
    EventType.APPROVAL_REJECTED: ApprovalRejected,
    EventType.APPROVAL_CANCELLED: ApprovalCancelled,
    EventType.APPROVAL_ENDORSED: ApprovalEndorsed,
    EventType.APPROVAL_OVERDUE: ApprovalOverdue,
    EventType.PROFILE_COMPLETED: ProfileCompleted,
    EventType.PROFILE_FAILED: ProfileFailed,
    EventType.INCIDENT_OPENED: IncidentOpened,
    EventType.INCIDENT_ACKNOWLEDGED: IncidentAcknowledged,
    EventType.INCIDENT_RESOLVED: IncidentResolved,
    EventType.EVENTS_REPLAYED: EventsReplayed,
}
# What an approval announces, per entity type that announces its new state.
APPROVED_EVENTS: dict[EntityType, EventType] = {
    EntityType.GLOBAL_METADATA: EventType.METADATA_APPROVED,
    EntityType.KPI: EventType.KPI_APPROVED,
}
CHANGED_EVENTS: dict[EntityType, EventType] = {
    EntityType.GLOBAL_METADATA: EventType.METADATA_CHANGED,
    EntityType.KPI: EventType.KPI_CHANGED,
}
# Events whose correlation id is the approval that caused them (the approval's own and its
# entity's), where the payload does not name it.
CORRELATED_BY_APPROVAL = frozenset(
    {
        EventType.APPROVAL_APPROVED,
        EventType.APPROVAL_REJECTED,
        EventType.APPROVAL_CANCELLED,
        EventType.APPROVAL_ENDORSED,
        EventType.APPROVAL_OVERDUE,
        EventType.METADATA_APPROVED,
        EventType.METADATA_CHANGED,
    }
)
# The outcomes of profiling an entity, which its quality incidents are decided from.
PROFILE_OUTCOMES = (EventType.PROFILE_COMPLETED, EventType.PROFILE_FAILED)


@dataclass(frozen=True)
class NewEvent:
    """An event about to be appended to the outbox (the store assigns `id`)."""

    type: EventType
    tenant_id: uuid.UUID
    entity_type: EntityType | DeploymentEntity
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

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Event:
        """An event as `to_json` wrote it (a dead letter keeps its event so)."""
        return cls(
            id=int(record["id"]),
            type=EventType(record["type"]),
            tenant_id=uuid.UUID(record["tenant_id"]),
            entity_type=entity_kind(record["entity_type"]),
            entity_key=record["entity_key"],
            correlation_id=uuid.UUID(record["correlation_id"]),
            actor=record["actor"],
            occurred_at=dt.datetime.fromisoformat(record["occurred_at"]),
            payload=record["payload"],
        )


def validate_event(event_type: str, payload: EventPayload | Mapping[str, Any]) -> dict[str, Any]:
    """Check a payload against its event type's schema; return it in its JSON form.

    A failure here is a bug in the emitter, never user input, so it raises `ValueError`
    and the surrounding transaction rolls back.
    """
    try:
        schema = EVENT_SCHEMAS[EventType(event_type)]
    except ValueError:
        raise ValueError(f"unknown event type {event_type!r}") from None
    if isinstance(payload, EventPayload):
        if type(payload) is not schema:
            raise ValueError(f"a {event_type} payload is a {schema.__name__}, not {payload!r}")
        return payload.model_dump(mode="json")
    try:
        return schema.model_validate(payload).model_dump(mode="json")
    except ValidationError as exc:
        raise ValueError(f"invalid {event_type} payload: {exc}") from exc


Payload = TypeVar("Payload", bound=EventPayload)


def read_payload(event: NewEvent, schema: type[Payload]) -> Payload:
    """An event's payload as its schema, so a consumer reads fields, not dict keys."""
    return parse_payload(event.type, event.payload, schema)


def parse_payload(event_type: str, payload: Mapping[str, Any], schema: type[Payload]) -> Payload:
    """A stored payload of `event_type` as its schema. Asking for another type's schema is a
    bug in the consumer, a payload its schema refuses one in the emitter: both `ValueError`,
    named in one line, as a dead letter keeps it."""
    expected = EVENT_SCHEMAS[EventType(event_type)]
    if expected is not schema:
        raise ValueError(f"a {event_type} payload is a {expected.__name__}, not {schema.__name__}")
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ValueError(f"invalid {event_type} payload: {problems}") from exc
