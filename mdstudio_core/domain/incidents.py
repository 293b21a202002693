"""Quality incidents: what a run of failing profiles means, and when it is over.

An incident opens when an entity's profiles fail its check `open_after` times in a row (a profile
that could not be taken counts as failing) and resolves by itself only when a score reaches the
tier's minimum plus a margin, so a score hovering at the line opens one incident, not one per
run. People acknowledge an incident (it stays open: someone is on it) or resolve it with a
reason. Every transition returns the event it writes; nothing here touches a store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput
from mdstudio_core.domain.events import EVENT_SCHEMAS, EventType, NewEvent, validate_event
from mdstudio_core.domain.model import TENANT_ADMIN_ROLE, EntityType, Identity, Tier
from mdstudio_core.domain.quality import QualityThresholds

SYSTEM_ACTOR = "mdstudio"  # who acts when the profiler's results move an incident
WATCHED_TIERS = (Tier.TIER1, Tier.TIER2)


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class IncidentPolicy:
    """`MDSTUDIO_INCIDENT_OPEN_AFTER` failing profiles in a row open an incident; a score of at
    least the tier minimum plus `MDSTUDIO_INCIDENT_RECOVERY_MARGIN` points resolves it."""

    open_after: int = 1
    recovery_margin: float = 2.0


@dataclass(frozen=True)
class ProfileOutcome:
    """One profile's verdict, as an incident sees it: passed or not, and the score (None when
    the table could not be profiled, or the profile could not be scored)."""

    passed: bool
    quality_score: float | None
    profile_id: uuid.UUID | None
    run_id: str | None


@dataclass(frozen=True)
class Incident:
    """A row of `mdm_quality_incident`."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    canonical_key: str
    tier: Tier
    status: IncidentStatus
    opened_at: dt.datetime
    opening_profile_id: uuid.UUID | None
    last_score: float | None
    acknowledged_by: str | None = None
    acknowledged_at: dt.datetime | None = None
    resolved_by: str | None = None
    resolved_at: dt.datetime | None = None
    resolution: str | None = None
    previous_incident_id: uuid.UUID | None = None

    @property
    def active(self) -> bool:
        return self.status is not IncidentStatus.RESOLVED

    def acknowledge(
        self,
        actor: Identity,
        deciding_role: str,
        note: str | None,
        now: dt.datetime,
        thresholds: QualityThresholds,
    ) -> tuple[Incident, NewEvent]:
        """Someone is on it; the incident stays open until it recovers or is resolved."""
        _check_may_handle(actor, deciding_role)
        if self.status is not IncidentStatus.OPEN:
            raise Conflict(f"incident {self.id} is already {self.status.value}")
        acknowledged = dataclasses.replace(
            self,
            status=IncidentStatus.ACKNOWLEDGED,
            acknowledged_by=actor.user,
            acknowledged_at=now,
        )
        return acknowledged, acknowledged._event(
            EventType.INCIDENT_ACKNOWLEDGED, actor.user, now, thresholds, note=note
        )

    def resolve(
        self,
        actor: Identity,
        deciding_role: str,
        reason: str | None,
        now: dt.datetime,
        thresholds: QualityThresholds,
    ) -> tuple[Incident, NewEvent]:
        """Closed by a person, who says why."""
        _check_may_handle(actor, deciding_role)
        reason = (reason or "").strip()
        if not reason:
            raise InvalidInput("a reason is required to resolve an incident", field="reason")
        if not self.active:
            raise Conflict(f"incident {self.id} is already resolved")
        resolved = self._resolved_by(actor.user, reason, now)
        return resolved, resolved._event(
            EventType.INCIDENT_RESOLVED, actor.user, now, thresholds, reason=reason
        )

    def _resolved_by(self, actor: str, reason: str, now: dt.datetime) -> Incident:
        return dataclasses.replace(
            self,
            status=IncidentStatus.RESOLVED,
            resolved_by=actor,
            resolved_at=now,
            resolution=reason,
        )

    def _event(
        self,
        event_type: EventType,
        actor: str,
        now: dt.datetime,
        thresholds: QualityThresholds,
        *,
        profile_id: uuid.UUID | None = None,
        run_id: str | None = None,
        **extra: Any,
    ) -> NewEvent:
        payload = EVENT_SCHEMAS[event_type](
            incident_id=self.id,
            canonical_key=self.canonical_key,
            tier=self.tier,
            quality_score=self.last_score,
            threshold=thresholds.minimum(self.tier),
            profile_id=profile_id or self.opening_profile_id,
            actor=actor,
            run_id=run_id,
            **{name: value for name, value in extra.items() if value is not None},
        )
        return NewEvent(
            type=event_type,
            tenant_id=self.tenant_id,
            entity_type=EntityType.GLOBAL_METADATA,
            entity_key=self.canonical_key,
            correlation_id=self.id,
            actor=actor,
            occurred_at=now,
            payload=validate_event(event_type, payload),
        )


def _check_may_handle(actor: Identity, deciding_role: str) -> None:
    """The role that decides the entity's tier, or a tenant admin."""
    if deciding_role not in actor.roles and TENANT_ADMIN_ROLE not in actor.roles:
        raise Forbidden(
            f"role {deciding_role} (the role that decides this tier) or {TENANT_ADMIN_ROLE} "
            "is required to handle this incident"
        )


@dataclass(frozen=True)
class Assessment:
    """What a new profile outcome does to an entity's incidents: a new or changed incident to
    store (None: nothing), and the event announcing a transition (None: no transition)."""

    incident: Incident | None = None
    event: NewEvent | None = None


def assess(
    tenant_id: uuid.UUID,
    canonical_key: str,
    tier: Tier,
    recent: Sequence[ProfileOutcome],
    active: Incident | None,
    previous: Incident | None,
    thresholds: QualityThresholds,
    policy: IncidentPolicy,
    now: dt.datetime,
) -> Assessment:
    """The hysteresis rule. `recent` are the entity's latest outcomes, newest first (the new
    one included); `active` its open or acknowledged incident; `previous` its last resolved one.

    * no active incident: the last `open_after` outcomes all failed -> open one (pointing to
      `previous`);
    * an active incident: a score of at least the minimum plus the margin -> resolved by
      recovery; anything else only updates its last score (no event: signals are for changes).
    """
    minimum = thresholds.minimum(tier)
    if tier not in WATCHED_TIERS or minimum is None or not recent:
        return Assessment()
    latest = recent[0]
    if active is None:
        streak = recent[: policy.open_after]
        if len(streak) < policy.open_after or any(outcome.passed for outcome in streak):
            return Assessment()
        opened = Incident(
            id=uuid.uuid4(),
            tenant_id=tenant_id,
            canonical_key=canonical_key,
            tier=tier,
            status=IncidentStatus.OPEN,
            opened_at=now,
            opening_profile_id=latest.profile_id,
            last_score=latest.quality_score,
            previous_incident_id=previous.id if previous else None,
        )
        event = opened._event(
            EventType.INCIDENT_OPENED,
            SYSTEM_ACTOR,
            now,
            thresholds,
            run_id=latest.run_id,
            previous_incident_id=opened.previous_incident_id,
        )
        return Assessment(opened, event)
    updated = dataclasses.replace(active, last_score=latest.quality_score)
    score = latest.quality_score
    if score is not None and score >= minimum + policy.recovery_margin:
        reason = (
            f"recovered: score {score:g} reached the {tier.value} minimum {minimum:g} plus the "
            f"margin of {policy.recovery_margin:g}"
        )
        resolved = updated._resolved_by(SYSTEM_ACTOR, reason, now)
        event = resolved._event(
            EventType.INCIDENT_RESOLVED,
            SYSTEM_ACTOR,
            now,
            thresholds,
            profile_id=latest.profile_id,
            run_id=latest.run_id,
            reason=reason,
        )
        return Assessment(resolved, event)
    return Assessment(updated, None)
