"""Quality incidents: judged in the transaction that records each profile outcome, handled by
people through the same commands from the CLI and the HTTP API. The rules are the domain's
(`mdstudio_core.domain.incidents`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

from mdstudio_core.config import Settings
from mdstudio_core.domain import clock
from mdstudio_core.domain import incidents as rules
from mdstudio_core.domain.approval_policy import TIER_LANE, required_role
from mdstudio_core.domain.approval_requests import check_reason
from mdstudio_core.domain.errors import NotFound
from mdstudio_core.domain.events import NewEvent
from mdstudio_core.domain.incidents import Incident, IncidentStatus
from mdstudio_core.domain.model import Identity, Tier, parse_id
from mdstudio_core.domain.quality import QualityThresholds
from mdstudio_core.service_layer.catalog import check_page
from mdstudio_core.service_layer.unit_of_work import UnitOfWork


def assess_entity(
    uow: UnitOfWork,
    settings: Settings,
    tenant_id: uuid.UUID,
    canonical_key: str,
    tier: Tier,
    now: dt.datetime,
) -> None:
    """Apply the hysteresis rule to the entity's latest outcomes, in the caller's open unit
    of work (the one that just recorded an outcome), and append the transition's event."""
    if tier not in rules.WATCHED_TIERS:
        return
    uow.incidents.lock_entity(tenant_id, canonical_key)  # two runs judging it queue here
    policy = settings.incident_policy
    recent = uow.events.recent_outcomes(tenant_id, canonical_key, policy.open_after)
    active, previous = uow.incidents.latest(tenant_id, canonical_key)
    assessment = rules.assess(
        tenant_id,
        canonical_key,
        tier,
        recent,
        active,
        previous,
        settings.quality_thresholds,
        policy,
        now,
    )
    if assessment.incident is not None:
        if active is None:
            uow.incidents.add(assessment.incident)
        else:
            uow.incidents.save(assessment.incident)
    if assessment.event is not None:
        uow.events.append([assessment.event])


def list_incidents(
    uow: UnitOfWork,
    identity: Identity,
    *,
    status: IncidentStatus | None = None,
    tier: Tier | None = None,
    entity_key: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Incident]:
    """The tenant's incidents, newest first."""
    check_page(limit, offset, "offset")
    with uow:
        return uow.incidents.list(
            identity.tenant_id,
            statuses=(status,) if status else (),
            tier=tier,
            canonical_key=entity_key,
            limit=limit,
            offset=offset,
        )


def get_incident(uow: UnitOfWork, identity: Identity, incident_id: uuid.UUID | str) -> Incident:
    incident_id = parse_id(incident_id, "incident_id")
    with uow:
        incident = uow.incidents.get(identity.tenant_id, incident_id)
    if incident is None:
        raise NotFound(f"incident {incident_id} not found")
    return incident


def acknowledge(
    uow: UnitOfWork,
    identity: Identity,
    incident_id: uuid.UUID | str,
    note: str | None,
    settings: Settings,
) -> Incident:
    """Someone is on it (the role that decides the entity's tier, or a tenant admin)."""
    note = check_reason(note, field="note")
    return _handle(uow, identity, incident_id, settings, Incident.acknowledge, note)


def resolve(
    uow: UnitOfWork,
    identity: Identity,
    incident_id: uuid.UUID | str,
    reason: str | None,
    settings: Settings,
) -> Incident:
    """Closed by a person, with the reason."""
    reason = check_reason(reason)
    return _handle(uow, identity, incident_id, settings, Incident.resolve, reason)


# What a person does to an incident: `Incident.acknowledge` or `Incident.resolve`.
Handling = Callable[
    [Incident, Identity, str, str | None, dt.datetime, QualityThresholds], tuple[Incident, NewEvent]
]


def _handle(
    uow: UnitOfWork,
    identity: Identity,
    incident_id: uuid.UUID | str,
    settings: Settings,
    handling: Handling,
    text: str | None,
) -> Incident:
    """Apply a person's `handling` to the incident (locked) and append its event, in one
    transaction."""
    incident_id = parse_id(incident_id, "incident_id")
    with uow:
        incident, role = _load(uow, identity, incident_id)
        updated, event = handling(
            incident, identity, role, text, clock.now(), settings.quality_thresholds
        )
        uow.incidents.save(updated)
        uow.events.append([event])
        uow.commit()
    return updated


def _load(uow: UnitOfWork, identity: Identity, incident_id: uuid.UUID) -> tuple[Incident, str]:
    """The incident (locked) and the role that decides its tier under the tenant's policy."""
    incident = uow.incidents.get(identity.tenant_id, incident_id, for_update=True)
    if incident is None:
        raise NotFound(f"incident {incident_id} not found")
    overrides = uow.policies.overrides(identity.tenant_id)
    return incident, required_role(TIER_LANE[incident.tier], incident.tier, overrides)
