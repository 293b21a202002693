"""Quality incidents."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, insert, select, text, update

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository
from mdstudio_core.domain.incidents import Incident, IncidentStatus
from mdstudio_core.domain.model import Tier


class IncidentRepository(Repository):
    """`mdm_quality_incident`: at most one active (not resolved) incident per entity."""

    def add(self, incident: Incident) -> None:
        self._connection.execute(insert(tables.quality_incidents).values(_incident_row(incident)))

    def save(self, incident: Incident) -> None:
        """Store an incident's new state (it exists)."""
        self._connection.execute(
            update(tables.quality_incidents)
            .where(tables.quality_incidents.c.id == incident.id)
            .values(_incident_row(incident))
        )

    def get(
        self, tenant_id: uuid.UUID, incident_id: uuid.UUID, *, for_update: bool = False
    ) -> Incident | None:
        column = tables.quality_incidents.c
        query = select(tables.quality_incidents).where(
            column.id == incident_id, column.tenant_id == tenant_id
        )
        if for_update:
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        return _incident(row) if row else None

    def lock_entity(self, tenant_id: uuid.UUID, canonical_key: str) -> None:
        """Hold the entity's incident lock to commit (PostgreSQL; SQLite serialises writers):
        two transactions judging one entity take turns, so neither opens a second incident."""
        if self._connection.dialect.name == "postgresql":
            self._connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": f"mdstudio-incident:{tenant_id}:{canonical_key}"},
            )

    def latest(
        self, tenant_id: uuid.UUID, canonical_key: str
    ) -> tuple[Incident | None, Incident | None]:
        """The entity's active incident (locked, so two runs judging it queue) and its last
        resolved one, either None."""
        column = tables.quality_incidents.c
        of_entity = (column.tenant_id == tenant_id, column.canonical_key == canonical_key)
        active = self._connection.execute(
            select(tables.quality_incidents)
            .where(*of_entity, column.status != IncidentStatus.RESOLVED.value)
            .with_for_update()
        ).first()
        previous = self._connection.execute(
            select(tables.quality_incidents)
            .where(*of_entity, column.status == IncidentStatus.RESOLVED.value)
            .order_by(column.resolved_at.desc(), column.id)
            .limit(1)
        ).first()
        return (_incident(active) if active else None, _incident(previous) if previous else None)

    def list(
        self,
        tenant_id: uuid.UUID,
        *,
        statuses: Sequence[IncidentStatus] = (),
        tier: Tier | None = None,
        canonical_key: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Incident]:
        """The tenant's incidents, newest first."""
        column = tables.quality_incidents.c
        query = select(tables.quality_incidents).where(column.tenant_id == tenant_id)
        if statuses:
            query = query.where(column.status.in_([status.value for status in statuses]))
        if tier is not None:
            query = query.where(column.tier == tier.value)
        if canonical_key is not None:
            query = query.where(column.canonical_key == canonical_key)
        query = query.order_by(column.opened_at.desc(), column.id).limit(limit).offset(offset)
        return [_incident(row) for row in self._connection.execute(query)]


def _incident_row(incident: Incident) -> dict[str, Any]:
    row = dataclasses.asdict(incident)
    return row | {"tier": incident.tier.value, "status": incident.status.value}


def _incident(row: Row[Any]) -> Incident:
    values = row._asdict()
    return Incident(**values | {"tier": Tier(row.tier), "status": IncidentStatus(row.status)})
