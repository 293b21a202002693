"""The live entities (global metadata fields and KPIs) and the pages of bound tables a tier's
profiling walks."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Row,
    Uuid,
    bindparam,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository, insert_rows, keys_by_tenant
from mdstudio_core.domain.model import (
    BOOKKEEPING_FIELDS,
    EntityStatus,
    EntityType,
    LiveEntity,
    TablePosition,
    Tier,
    stored_binding,
)


class EntityRepository(Repository):
    """The live catalog: one table per entity type, one row per (tenant, canonical key)."""

    def get(self, entity_type: EntityType, tenant_id: uuid.UUID, key: str) -> LiveEntity | None:
        table = tables.ENTITY_TABLES[entity_type]
        query = select(table).where(table.c.tenant_id == tenant_id, table.c.canonical_key == key)
        row = self._connection.execute(query).first()
        return live_entity(entity_type, row) if row else None

    def list(
        self,
        entity_type: EntityType,
        tenant_id: uuid.UUID,
        *,
        tier: Tier | None = None,
        status: EntityStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[LiveEntity]:
        table = tables.ENTITY_TABLES[entity_type]
        query = select(table).where(table.c.tenant_id == tenant_id)
        if tier is not None:
            query = query.where(table.c.tier == tier.value)
        if status is not None:
            query = query.where(table.c.status == status.value)
        query = query.order_by(table.c.canonical_key).limit(limit).offset(offset)
        return [live_entity(entity_type, row) for row in self._connection.execute(query)]

    def get_many(
        self, entity_type: EntityType, entities: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], LiveEntity]:
        """Several entities at once, keyed by (tenant, canonical key); missing ones are absent."""
        table = tables.ENTITY_TABLES[entity_type]
        found: dict[tuple[uuid.UUID, str], LiveEntity] = {}
        for tenant_id, keys in keys_by_tenant(entities):
            rows = self._connection.execute(
                select(table).where(table.c.tenant_id == tenant_id, table.c.canonical_key.in_(keys))
            )
            found.update(
                {(tenant_id, row.canonical_key): live_entity(entity_type, row) for row in rows}
            )
        return found

    def bound_to_table(
        self, tenant_id: uuid.UUID, source: str, schema: str | None, table: str
    ) -> list[LiveEntity]:
        """The tenant's fields bound to one table that are profiled (bound, not deprecated):
        an incremental pass measures all their columns, so its state serves every one."""
        column = tables.global_metadata.c
        query = (
            select(tables.global_metadata)
            .where(
                column.tenant_id == tenant_id,
                column.status != EntityStatus.DEPRECATED.value,
                column.binding.is_not(None),
            )
            .order_by(column.canonical_key)
        )
        found = [
            live_entity(EntityType.GLOBAL_METADATA, row) for row in self._connection.execute(query)
        ]
        return [
            entity
            for entity in found
            if entity.binding is not None
            and (entity.binding.source, entity.binding.schema_, entity.binding.table)
            == (source, schema, table)
        ]

    def bound_tables(
        self, tier: Tier, after: TablePosition | None, limit: int
    ) -> list[TablePosition]:
        """The next `limit` tables after `after` that active bound entities of `tier` are bound
        to, in every tenant, in the order a scheduled pass pages them."""
        position = _table_position()
        query = (
            select(*position).where(*_bound_of(tier)).distinct().order_by(*position).limit(limit)
        )
        if after is not None:
            query = query.where(tuple_(*position) > _position_values(after))
        return [
            (str(tenant_id), source, schema, table)
            for tenant_id, source, schema, table in self._connection.execute(query)
        ]

    def bound_on_tables(
        self, tier: Tier, after: TablePosition | None, through: TablePosition
    ) -> list[LiveEntity]:
        """The active bound entities of `tier` on the tables after `after` up to `through`
        (`bound_tables` order), by tenant and canonical key."""
        table = tables.global_metadata
        position = tuple_(*_table_position())
        query = (
            select(table)
            .where(*_bound_of(tier), position <= _position_values(through))
            .order_by(table.c.tenant_id, table.c.canonical_key)
        )
        if after is not None:
            query = query.where(position > _position_values(after))
        return [
            live_entity(EntityType.GLOBAL_METADATA, row) for row in self._connection.execute(query)
        ]

    def insert(
        self,
        entity_type: EntityType,
        tenant_id: uuid.UUID,
        entity_id: uuid.UUID,
        state: dict[str, Any],
        actor: str,
        at: dt.datetime,
    ) -> None:
        table = tables.ENTITY_TABLES[entity_type]
        self._connection.execute(
            insert(table).values(
                id=entity_id,
                tenant_id=tenant_id,
                version=1,
                updated_at=at,
                updated_by=actor,
                **state,
            )
        )

    def update(
        self,
        entity_type: EntityType,
        tenant_id: uuid.UUID,
        key: str,
        expected_version: int,
        state: dict[str, Any],
        actor: str,
        at: dt.datetime,
    ) -> bool:
        """Replace the state if the row is still at `expected_version` (compare-and-set)."""
        table = tables.ENTITY_TABLES[entity_type]
        result = self._connection.execute(
            update(table)
            .where(
                table.c.tenant_id == tenant_id,
                table.c.canonical_key == key,
                table.c.version == expected_version,
            )
            .values(version=expected_version + 1, updated_at=at, updated_by=actor, **state)
        )
        return result.rowcount == 1

    def insert_many(
        self,
        entity_type: EntityType,
        tenant_id: uuid.UUID,
        entities: Sequence[tuple[uuid.UUID, dict[str, Any]]],
        actor: str,
        at: dt.datetime,
    ) -> None:
        """New entities (id, state) at version 1, in one batch."""
        insert_rows(
            self._connection,
            tables.ENTITY_TABLES[entity_type],
            [
                {
                    "id": entity_id,
                    "tenant_id": tenant_id,
                    "version": 1,
                    "updated_at": at,
                    "updated_by": actor,
                    **state,
                }
                for entity_id, state in entities
            ],
        )

    def update_many(
        self,
        entity_type: EntityType,
        tenant_id: uuid.UUID,
        changes: Sequence[tuple[str, int, dict[str, Any]]],
        actor: str,
        at: dt.datetime,
    ) -> int:
        """Replace the state of each (key, expected version, state) whose row is still at its
        expected version (compare-and-set), in one batch; returns how many rows were written.
        Rows are written in key order, so two batches over the same entities never deadlock."""
        if not changes:
            return 0
        table = tables.ENTITY_TABLES[entity_type]
        statement = update(table).where(
            table.c.tenant_id == bindparam("match_tenant"),
            table.c.canonical_key == bindparam("match_key"),
            table.c.version == bindparam("match_version"),
        )
        result = self._connection.execute(
            statement,
            [
                {
                    "match_tenant": tenant_id,
                    "match_key": key,
                    "match_version": version,
                    "version": version + 1,
                    "updated_at": at,
                    "updated_by": actor,
                    **state,
                }
                for key, version, state in sorted(changes, key=lambda change: change[0])
            ],
        )
        return result.rowcount


def _bound_of(tier: Tier) -> list[Any]:
    table = tables.global_metadata
    return [
        table.c.tier == tier.value,
        table.c.status == EntityStatus.ACTIVE.value,
        table.c.binding.is_not(None),
    ]


def _table_position() -> list[Any]:
    """A bound entity's table as pages order it: tenant, source, schema ("" for the source's
    default) and table, read from the binding."""
    binding = tables.global_metadata.c.binding
    return [
        tables.global_metadata.c.tenant_id,
        func.coalesce(binding["source"].as_string(), "warehouse"),
        func.coalesce(binding["schema"].as_string(), ""),
        binding["table"].as_string(),
    ]


def _position_values(position: TablePosition) -> Any:
    tenant_id, source, schema, table = position
    return tuple_(
        bindparam(None, uuid.UUID(tenant_id), type_=Uuid),
        literal(source),
        literal(schema),
        literal(table),
    )


def live_entity(entity_type: EntityType, row: Row[Any]) -> LiveEntity:
    values = row._asdict()
    state = {name: value for name, value in values.items() if name not in BOOKKEEPING_FIELDS}
    binding = values.get("binding")
    return LiveEntity(
        entity_type=entity_type,
        id=row.id,
        tenant_id=row.tenant_id,
        canonical_key=row.canonical_key,
        tier=Tier(row.tier),
        status=EntityStatus(row.status),
        version=row.version,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        state=state,
        binding=stored_binding(binding) if binding else None,
    )
