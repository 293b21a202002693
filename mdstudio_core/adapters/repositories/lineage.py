"""The catalog as a lineage graph and each KPI's trust state."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, text, update

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.entities import live_entity
from mdstudio_core.adapters.repositories.shared import Repository, keys_by_tenant
from mdstudio_core.domain.lineage import TrustState
from mdstudio_core.domain.model import EntityStatus, EntityType, LiveEntity


class LineageRepository(Repository):
    """Tenant names, the catalog as a graph (every tenant's bound fields and active KPIs), the
    latest profile of each field, and each KPI's trust state (`mdm_kpi_trust`)."""

    def tenant_names(self, tenant_ids: Sequence[uuid.UUID] | None = None) -> dict[uuid.UUID, str]:
        column = tables.tenants.c
        query = select(column.tenant_id, column.name)
        if tenant_ids is not None:
            query = query.where(column.tenant_id.in_(list(tenant_ids)))
        return {row.tenant_id: row.name for row in self._connection.execute(query)}

    def name_taken(self, name: str, tenant_id: uuid.UUID) -> bool:
        column = tables.tenants.c
        return (
            self._connection.execute(
                select(column.tenant_id).where(column.name == name, column.tenant_id != tenant_id)
            ).first()
            is not None
        )

    def set_tenant_name(self, tenant_id: uuid.UUID, name: str, actor: str, at: dt.datetime) -> None:
        column = tables.tenants.c
        values = {"name": name, "updated_at": at, "updated_by": actor}
        if not self._connection.execute(
            update(tables.tenants).where(column.tenant_id == tenant_id).values(values)
        ).rowcount:
            self._connection.execute(insert(tables.tenants).values(tenant_id=tenant_id, **values))

    def version(self) -> tuple[Any, ...]:
        """What changes whenever the graph may have: each entity table's rows and the sum of
        their versions (every change bumps one; entities are never deleted), and the tenants'
        names. Three small aggregates instead of the whole catalog."""
        counted = []
        for table in (tables.global_metadata, tables.kpis):
            counted.append(
                tuple(
                    self._connection.execute(
                        select(func.count(), func.coalesce(func.sum(table.c.version), 0))
                    ).one()
                )
            )
        column = tables.tenants.c
        names = self._connection.execute(
            select(column.tenant_id, column.name).order_by(column.tenant_id)
        ).all()
        return (*counted, tuple(tuple(row) for row in names))

    def bound_fields(self) -> list[LiveEntity]:
        """Every tenant's bound fields that are not deprecated, drafts included: the asset graph
        shows where a draft reads from, though only active fields are profiled."""
        table = tables.global_metadata
        query = (
            select(table)
            .where(
                table.c.status != EntityStatus.DEPRECATED.value,
                table.c.binding.is_not(None),
            )
            .order_by(table.c.tenant_id, table.c.canonical_key)
        )
        return [
            live_entity(EntityType.GLOBAL_METADATA, row) for row in self._connection.execute(query)
        ]

    def active_kpis(self, tenant_id: uuid.UUID | None = None) -> list[LiveEntity]:
        """Active KPIs, of one tenant or of every tenant, by tenant and key."""
        table = tables.kpis
        query = select(table).where(table.c.status == EntityStatus.ACTIVE.value)
        if tenant_id is not None:
            query = query.where(table.c.tenant_id == tenant_id)
        query = query.order_by(table.c.tenant_id, table.c.canonical_key)
        return [live_entity(EntityType.KPI, row) for row in self._connection.execute(query)]

    def latest_profiles(
        self, tenant_id: uuid.UUID, keys: Sequence[str]
    ) -> dict[str, tuple[float | None, dt.datetime]]:
        """The latest profile's (score, time) of each field among `keys` that has one."""
        column = tables.profiles.c
        found: dict[str, tuple[float | None, dt.datetime]] = {}
        for _tenant, chunk in keys_by_tenant([(tenant_id, key) for key in keys]):
            ranked = (
                select(
                    column.canonical_key,
                    column.quality_score,
                    column.created_at,
                    func.row_number()
                    .over(
                        partition_by=column.canonical_key,
                        order_by=(column.created_at.desc(), column.id),
                    )
                    .label("rank"),
                )
                .where(column.tenant_id == tenant_id, column.canonical_key.in_(chunk))
                .subquery()
            )
            rows = self._connection.execute(
                select(ranked.c.canonical_key, ranked.c.quality_score, ranked.c.created_at).where(
                    ranked.c.rank == 1
                )
            )
            found.update({row.canonical_key: (row.quality_score, row.created_at) for row in rows})
        return found

    def trust_states(self, tenant_id: uuid.UUID, keys: Sequence[str]) -> dict[str, TrustState]:
        column = tables.kpi_trust.c
        found: dict[str, TrustState] = {}
        for _tenant, chunk in keys_by_tenant([(tenant_id, key) for key in keys]):
            rows = self._connection.execute(
                select(tables.kpi_trust).where(
                    column.tenant_id == tenant_id, column.canonical_key.in_(chunk)
                )
            )
            found.update({row.canonical_key: TrustState(**row._asdict()) for row in rows})
        return found

    def lock_kpi(self, tenant_id: uuid.UUID, canonical_key: str) -> None:
        """Two runs recomputing one KPI take turns (PostgreSQL; SQLite serialises writers)."""
        if self._connection.dialect.name == "postgresql":
            self._connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": f"mdstudio-kpi-trust:{tenant_id}:{canonical_key}"},
            )

    def save_trust(self, state: TrustState, exists: bool) -> None:
        row = dataclasses.asdict(state)
        column = tables.kpi_trust.c
        if exists:
            self._connection.execute(
                update(tables.kpi_trust)
                .where(
                    column.tenant_id == state.tenant_id,
                    column.canonical_key == state.canonical_key,
                )
                .values(row)
            )
        else:
            self._connection.execute(insert(tables.kpi_trust).values(row))
