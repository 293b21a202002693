"""Repositories: the only code that writes SQL against the store. Each works on the connection of
one unit of work, so whatever they do commits or rolls back together."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Row,
    Select,
    Table,
    Text,
    Uuid,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from mdstudio_core.adapters import tables
from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.approvals import Approval, ApprovalListing, Endorsement
from mdstudio_core.domain.consumers import ConsumerCursor, DeadLetter, DeadLetterStatus
from mdstudio_core.domain.events import Event, NewEvent, entity_kind
from mdstudio_core.domain.idempotency import Answer, KeyedRequest, StoredKey
from mdstudio_core.domain.incidents import Incident, IncidentStatus, ProfileOutcome
from mdstudio_core.domain.incremental import ProfileDay, TableState
from mdstudio_core.domain.lineage import TrustState
from mdstudio_core.domain.model import (
    BOOKKEEPING_FIELDS,
    ApiToken,
    ApprovalStatus,
    EntityStatus,
    EntityType,
    Identity,
    Lane,
    LiveEntity,
    PassProgress,
    ProfilePass,
    TablePosition,
    Tier,
    stored_binding,
)
from mdstudio_core.domain.notifications import Delivery, DeliveryStatus, Subscription
from mdstudio_core.domain.quality import StoredProfile
from mdstudio_core.domain.retention import ArchiveRecord

# The outbox's visibility rule on PostgreSQL (see `EventOutbox.append`): a writer announces a
# bound below the event ids it is about to draw, as a shared advisory lock keyed by the bound
# plus a tag ("m" in the top byte, so no other advisory lock is mistaken for one) held until it
# commits; readers read up to the lowest bound held.
_BOUND_TAG = 0x6D << 56
_BOUND_SPAN = 1 << 56
_ANNOUNCE_BOUND = text(
    "SELECT pg_advisory_xact_lock_shared(:tag + last_value - 1) FROM mdm_event_id_seq"
).bindparams(tag=_BOUND_TAG)
_HORIZON = text(
    "SELECT least("
    " (SELECT coalesce(max(id), 0) FROM mdm_event),"
    " (SELECT min(key) - :tag FROM ("
    "   SELECT (classid::bigint << 32) | objid::bigint AS key FROM pg_locks"
    "   WHERE locktype = 'advisory' AND objsubid = 1"
    "   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " ) AS held WHERE key >= :tag AND key < :tag + :span))"
).bindparams(tag=_BOUND_TAG, span=_BOUND_SPAN)


# Batches of more rows or events than this go to PostgreSQL as one JSON array (`insert_rows`,
# `EventOutbox._append_unnested`); smaller ones as before.
_UNNEST_FROM = 20
_INSERT_UNNESTED = text(
    "INSERT INTO mdm_event"
    " (type, tenant_id, entity_type, entity_key, correlation_id, actor, occurred_at, payload)"
    " SELECT event->>'type', CAST(event->>'tenant_id' AS uuid), event->>'entity_type',"
    " event->>'entity_key', CAST(event->>'correlation_id' AS uuid), event->>'actor',"
    " CAST(event->>'occurred_at' AS timestamptz), event->'payload'"
    " FROM jsonb_array_elements(CAST(:batch AS jsonb)) WITH ORDINALITY AS batch(event, position)"
    " ORDER BY position RETURNING id"
)


def insert_rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows (each with the same columns). On PostgreSQL a large batch goes as one
    JSON array read by `jsonb_populate_recordset`, for the reason `_append_unnested` gives;
    elsewhere, and for a few rows, as the driver's executemany."""
    if not rows:
        return
    if connection.dialect.name != "postgresql" or len(rows) <= _UNNEST_FROM:
        connection.execute(insert(table), list(rows))
        return
    columns = ", ".join(f'"{name}"' for name in rows[0])
    connection.execute(
        text(
            f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM "
            f"jsonb_populate_recordset(NULL::{table.name}, CAST(:rows AS jsonb))"
        ),
        {"rows": orjson.dumps(list(rows)).decode()},
    )


def _approval_from_row(row: Row[Any]) -> Approval:
    values = row._asdict()
    return Approval(
        **values
        | {
            "entity_type": EntityType(row.entity_type),
            "tier": Tier(row.tier),
            "lane": Lane(row.lane),
            "status": ApprovalStatus(row.status),
        }
    )


# The fields of an approval stored in its own row (endorsements have a table of their own).
_APPROVAL_COLUMNS = frozenset(tables.approvals.c.keys())


class ApprovalRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, approval: Approval) -> None:
        values = {
            field.name: getattr(approval, field.name)
            for field in dataclasses.fields(approval)
            if field.name in _APPROVAL_COLUMNS
        }
        self._connection.execute(insert(tables.approvals).values(values))

    def get(
        self, tenant_id: uuid.UUID, approval_id: uuid.UUID, *, for_update: bool = False
    ) -> Approval | None:
        """One request of the tenant. `for_update` locks the row (PostgreSQL) so that racing
        deciders queue behind each other and the loser sees the winner's decision."""
        query = select(tables.approvals).where(
            tables.approvals.c.id == approval_id, tables.approvals.c.tenant_id == tenant_id
        )
        if for_update:
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        if row is None:
            return None
        approval = _approval_from_row(row)
        if approval.required_approvals > 1:
            endorsements = self.endorsements_of(tenant_id, [approval.id]).get(approval.id, ())
            approval = dataclasses.replace(approval, endorsements=endorsements)
        return approval

    def endorse(self, approval: Approval, endorsement: Endorsement) -> None:
        """Record an endorsement (an approver endorsing twice breaks the primary key), and the
        role and approver count the request was endorsed under: when the decision judged it
        stricter than at submission, the stricter ones stay (and its endorsements are read
        back with it from then on)."""
        self._connection.execute(
            update(tables.approvals)
            .where(tables.approvals.c.id == approval.id)
            .values(
                required_role=approval.required_role,
                required_approvals=approval.required_approvals,
            )
        )
        self._connection.execute(
            insert(tables.approval_endorsements).values(
                approval_id=approval.id,
                endorsed_by=endorsement.user,
                tenant_id=approval.tenant_id,
                endorsed_at=endorsement.at,
                reason=endorsement.reason,
            )
        )

    def endorsements_of(
        self, tenant_id: uuid.UUID, approval_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[Endorsement, ...]]:
        """The endorsements of these requests of the tenant, oldest first; those with none
        are absent."""
        column = tables.approval_endorsements.c
        found: dict[uuid.UUID, list[Endorsement]] = {}
        for start in range(0, len(approval_ids), 500):
            rows = self._connection.execute(
                select(column.approval_id, column.endorsed_by, column.endorsed_at, column.reason)
                .where(
                    column.tenant_id == tenant_id,
                    column.approval_id.in_(approval_ids[start : start + 500]),
                )
                .order_by(column.endorsed_at, column.endorsed_by)
            )
            for row in rows:
                found.setdefault(row.approval_id, []).append(
                    Endorsement(row.endorsed_by, row.endorsed_at, row.reason)
                )
        return {approval_id: tuple(found_) for approval_id, found_ in found.items()}

    def due(self, tier: Tier, requested_before: dt.datetime, limit: int) -> list[Approval]:
        """Pending requests of `tier` (every tenant's) requested before `requested_before`
        and not yet marked overdue, oldest first; locked, skipping any a decision holds
        (PostgreSQL; SQLite serialises writers)."""
        column = tables.approvals.c
        query = (
            select(tables.approvals)
            .where(
                column.status == ApprovalStatus.PENDING.value,
                column.overdue_at.is_(None),
                column.tier == tier.value,
                column.requested_at <= requested_before,
            )
            .order_by(column.requested_at, column.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_approval_from_row(row) for row in self._connection.execute(query)]

    def mark_overdue(self, approval_ids: Sequence[uuid.UUID], at: dt.datetime) -> None:
        """Note when `approval.overdue` was written for these requests (once each)."""
        column = tables.approvals.c
        self._connection.execute(
            update(tables.approvals)
            .where(column.id.in_(approval_ids), column.overdue_at.is_(None))
            .values(overdue_at=at)
        )

    def record_decision(self, decided: Approval) -> bool:
        """Store a decided request if it is still pending, with the role that decided it;
        False when it was not (the compare-and-set that makes a second decision impossible on
        every backend)."""
        result = self._connection.execute(
            update(tables.approvals)
            .where(
                tables.approvals.c.id == decided.id,
                tables.approvals.c.status == ApprovalStatus.PENDING.value,
            )
            .values(
                status=decided.status.value,
                required_role=decided.required_role,
                decided_by=decided.decided_by,
                decided_at=decided.decided_at,
                decision_reason=decided.decision_reason,
            )
        )
        return result.rowcount == 1

    def list(self, tenant_id: uuid.UUID, wanted: ApprovalFilter) -> list[ApprovalListing]:
        """The inbox as `wanted` filters it, served by the (tenant, status, requested_at) index.
        The payload and current state are read as JSON text, and only if `wanted` includes
        them."""
        column = tables.approvals.c
        filters = [column.tenant_id == tenant_id]
        if wanted.required_roles is not None:
            filters.append(column.required_role.in_(sorted(wanted.required_roles)))
        if wanted.requested_by is not None:
            filters.append(column.requested_by == wanted.requested_by)
        if wanted.not_requested_by is not None:
            filters.append(column.requested_by != wanted.not_requested_by)
        for value, col in (
            (wanted.status, column.status),
            (wanted.entity_type, column.entity_type),
            (wanted.tier, column.tier),
            (wanted.lane, column.lane),
        ):
            if value is not None:
                filters.append(col == value.value)
        if wanted.entity_key is not None:
            filters.append(column.entity_key == wanted.entity_key)
        selected = [c for c in tables.approvals.c if c.name not in ("payload", "current_state")]
        if wanted.include_payload:
            selected += [
                cast(column.payload, Text).label("payload_json"),
                cast(column.current_state, Text).label("current_state_json"),
            ]
        query = (
            select(*selected)
            .where(and_(*filters))
            .order_by(
                *(
                    (column.requested_at, column.id)
                    if wanted.oldest_first
                    else (column.requested_at.desc(), column.id.desc())
                )
            )
            .limit(wanted.limit)
            .offset(wanted.offset)
        )
        listings = []
        for row in self._connection.execute(query):
            summary = row._asdict()
            listings.append(
                ApprovalListing(
                    summary,
                    payload_json=summary.pop("payload_json", None),
                    current_state_json=summary.pop("current_state_json", None),
                )
            )
        return listings


class ChangeSetRepository:
    """`mdm_change_set_item`: the items of each change set, by number."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add_items(self, change_set: Approval, items: Sequence[Approval]) -> None:
        """Store the items of `change_set` (already added as an approval), numbered from 1."""
        insert_rows(
            self._connection,
            tables.change_set_items,
            [
                {
                    "change_set_id": change_set.id,
                    "position": number,
                    "tenant_id": change_set.tenant_id,
                    "entity_type": item.entity_type.value,
                    "entity_id": item.entity_id,
                    "entity_key": item.entity_key,
                    "tier": item.tier.value,
                    "lane": item.lane.value,
                    "payload": item.payload,
                    "current_state": item.current_state,
                    "required_role": item.required_role,
                }
                for number, item in enumerate(items, 1)
            ],
        )

    def items(self, change_set: Approval) -> list[Approval]:
        """The set's items in order, each a request of the set's (its id, requester, status)
        with the item's own change and the role it would need alone."""
        column = tables.change_set_items.c
        rows = self._connection.execute(
            select(tables.change_set_items)
            .where(column.change_set_id == change_set.id, column.tenant_id == change_set.tenant_id)
            .order_by(column.position)
        )
        return [
            dataclasses.replace(
                change_set,
                entity_type=EntityType(row.entity_type),
                entity_id=row.entity_id,
                entity_key=row.entity_key,
                tier=Tier(row.tier),
                lane=Lane(row.lane),
                payload=row.payload,
                current_state=row.current_state,
                required_role=row.required_role,
                required_approvals=1,
                endorsements=(),
            )
            for row in rows
        ]

    def counts(
        self, tenant_id: uuid.UUID, change_set_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        """How many items each of these sets of the tenant holds (a request that is no set is
        absent)."""
        column = tables.change_set_items.c
        if not change_set_ids:
            return {}
        rows = self._connection.execute(
            select(column.change_set_id, func.count())
            .where(column.tenant_id == tenant_id, column.change_set_id.in_(change_set_ids))
            .group_by(column.change_set_id)
        )
        return {set_id: count for set_id, count in rows}


class EntityRepository:
    """The live catalog: one table per entity type, one row per (tenant, canonical key)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def get(self, entity_type: EntityType, tenant_id: uuid.UUID, key: str) -> LiveEntity | None:
        table = tables.ENTITY_TABLES[entity_type]
        query = select(table).where(table.c.tenant_id == tenant_id, table.c.canonical_key == key)
        row = self._connection.execute(query).first()
        return _live_entity(entity_type, row) if row else None

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
        return [_live_entity(entity_type, row) for row in self._connection.execute(query)]

    def get_many(
        self, entity_type: EntityType, entities: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], LiveEntity]:
        """Several entities at once, keyed by (tenant, canonical key); missing ones are absent."""
        table = tables.ENTITY_TABLES[entity_type]
        found: dict[tuple[uuid.UUID, str], LiveEntity] = {}
        for tenant_id, keys in _keys_by_tenant(entities):
            rows = self._connection.execute(
                select(table).where(table.c.tenant_id == tenant_id, table.c.canonical_key.in_(keys))
            )
            found.update(
                {(tenant_id, row.canonical_key): _live_entity(entity_type, row) for row in rows}
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
            _live_entity(EntityType.GLOBAL_METADATA, row) for row in self._connection.execute(query)
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
            _live_entity(EntityType.GLOBAL_METADATA, row) for row in self._connection.execute(query)
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


def _live_entity(entity_type: EntityType, row: Row[Any]) -> LiveEntity:
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


def _keys_by_tenant(
    entities: Sequence[tuple[uuid.UUID, str]], chunk: int = 500
) -> Iterator[tuple[uuid.UUID, list[str]]]:
    """(tenant, up to `chunk` keys) groups: one bounded `IN` query each for a batch lookup."""
    by_tenant: dict[uuid.UUID, list[str]] = {}
    for tenant_id, key in entities:
        by_tenant.setdefault(tenant_id, []).append(key)
    for tenant_id, keys in by_tenant.items():
        for start in range(0, len(keys), chunk):
            yield tenant_id, keys[start : start + chunk]


PROFILE_OUTCOMES = ("metadata.profile.completed", "metadata.profile.failed")


class EventOutbox:
    """`mdm_event`, the transactional outbox the Dagster sensor and API consumers read."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def append(self, new_events: Sequence[NewEvent]) -> list[Event]:
        """Insert events in order, as the last step of the caller's transaction.

        Readers page by `id > cursor`, so they must never see id 11 while id 10 can still
        commit (on PostgreSQL a sequence does not promise commit order, and a reader past 11
        would skip 10 for ever). So before drawing its ids a writer announces a bound below
        them, the sequence's last value, and holds it until it ends; readers read no further
        than the lowest bound held (`_horizon`). Nobody waits for anybody: writers not for each
        other (their commits still share fsyncs) nor for readers, readers not for writers, so
        no reader can slow the writers down. SQLite serialises writers already.
        """
        if not new_events:
            return []
        postgresql = self._connection.dialect.name == "postgresql"
        if postgresql:
            self._connection.execute(_ANNOUNCE_BOUND)
        if postgresql and len(new_events) > _UNNEST_FROM:
            ids: Iterable[int] = self._append_unnested(new_events)
        else:
            ids = self._connection.execute(
                insert(tables.events).returning(tables.events.c.id, sort_by_parameter_order=True),
                [
                    {
                        "type": event.type,
                        "tenant_id": event.tenant_id,
                        "entity_type": event.entity_type.value,
                        "entity_key": event.entity_key,
                        "correlation_id": event.correlation_id,
                        "actor": event.actor,
                        "occurred_at": event.occurred_at,
                        "payload": event.payload,
                    }
                    for event in new_events
                ],
            ).scalars()
        # `vars`, not `dataclasses.asdict`: no deep copy of every payload (a change set
        # appends tens of thousands of events at once).
        return [
            Event(**vars(event), id=event_id)
            for event, event_id in zip(new_events, ids, strict=True)
        ]

    def _append_unnested(self, new_events: Sequence[NewEvent]) -> list[int]:
        """A large batch on PostgreSQL (a change set's): one statement over one JSON array.
        The multi-row VALUES the batch would otherwise be sent as costs the driver about 30 µs
        per parameter to rewrite (10 s for 40,000 events); one JSON text costs it nothing, and
        PostgreSQL reads it in C. Rows are inserted, and so draw their ids, in the batch's
        order, so the ids sorted are the events' in order."""
        batch = orjson.dumps(
            [
                {
                    "type": event.type,
                    "tenant_id": event.tenant_id,
                    "entity_type": event.entity_type.value,
                    "entity_key": event.entity_key,
                    "correlation_id": event.correlation_id,
                    "actor": event.actor,
                    "occurred_at": event.occurred_at,
                    "payload": event.payload,
                }
                for event in new_events
            ]
        ).decode()
        return sorted(self._connection.execute(_INSERT_UNNESTED, {"batch": batch}).scalars())

    def list(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        tenant_id: uuid.UUID | None = None,
        entity_key: str | None = None,
        max_bytes: int | None = None,
        through: int | None = None,
    ) -> list[Event]:
        """Events with `id > after` (and `id <= through`, given), oldest first; across tenants
        when `tenant_id` is None (the consumers), otherwise one tenant's. With `max_bytes`, the
        page stops before the event whose payload would take it past that many bytes of JSON
        (it always holds one event), counted in the database, so no more than that is ever
        read."""
        column = tables.events.c
        query = select(tables.events).where(column.id > after)
        if through is not None:
            query = query.where(column.id <= through)
        if self._connection.dialect.name == "postgresql":
            query = query.where(column.id <= self._horizon())
        if tenant_id is not None:
            query = query.where(column.tenant_id == tenant_id)
        if entity_key is not None:
            query = query.where(column.entity_key == entity_key)
        query = query.order_by(column.id).limit(limit)
        if max_bytes is not None:
            query = _bounded_by_bytes(query, max_bytes)
        return [
            Event(
                id=row.id,
                type=row.type,
                tenant_id=row.tenant_id,
                entity_type=entity_kind(row.entity_type),
                entity_key=row.entity_key,
                correlation_id=row.correlation_id,
                actor=row.actor,
                occurred_at=row.occurred_at,
                payload=row.payload,
            )
            for row in self._connection.execute(query)
        ]

    def recent_outcomes(
        self, tenant_id: uuid.UUID, canonical_key: str, count: int
    ) -> list[ProfileOutcome]:
        """The entity's latest `count` profile outcomes (completed or failed), newest first,
        read from the outbox where every profile and failure is recorded."""
        column = tables.events.c
        rows = self._connection.execute(
            select(column.type, column.payload)
            .where(
                column.tenant_id == tenant_id,
                column.entity_key == canonical_key,
                column.type.in_(PROFILE_OUTCOMES),
            )
            .order_by(column.id.desc())
            .limit(count)
        )
        return [
            ProfileOutcome(
                passed=payload.get("check_passed", False),
                quality_score=payload.get("quality_score"),
                profile_id=uuid.UUID(payload["profile_id"]) if payload.get("profile_id") else None,
                run_id=payload.get("run_id"),
            )
            for _type, payload in rows
        ]

    def recorded(
        self, tenant_id: uuid.UUID, canonical_key: str, event_type: str, correlation_id: uuid.UUID
    ) -> bool:
        """Whether this event was written already (a retried run writes its events once)."""
        column = tables.events.c
        return (
            self._connection.execute(
                select(column.id).where(
                    column.tenant_id == tenant_id,
                    column.entity_key == canonical_key,
                    column.type == event_type,
                    column.correlation_id == correlation_id,
                )
            ).first()
            is not None
        )

    def head(self) -> int:
        """The id of the last event a reader can see now (0 when there is none)."""
        if self._connection.dialect.name == "postgresql":
            return self._horizon()
        return int(
            self._connection.execute(
                select(func.coalesce(func.max(tables.events.c.id), 0))
            ).scalar_one()
        )

    def last_before(self, after: int, before: dt.datetime) -> int:
        """The last id after `after` of the run of events that happened before `before` (the
        outbox's order is the commit order: an archive's cut ends at the first later event);
        `after` when the first event after it is not that old."""
        column = tables.events.c
        later = self._connection.execute(
            select(func.min(column.id)).where(column.id > after, column.occurred_at >= before)
        ).scalar()
        if later is not None:
            return int(later) - 1
        return max(self.head(), after)

    def profile_outcomes(self, after: int, through: int) -> list[tuple[uuid.UUID, str, str, int]]:
        """The profile outcomes among the events after `after` through `through`."""
        return profile_outcome_counts(self._connection, after=after, through=through)

    def lowest(self) -> int | None:
        """The id of the oldest event kept (None when the outbox is empty)."""
        return self._connection.execute(select(func.min(tables.events.c.id))).scalar()

    def restore(self, events: Sequence[Event]) -> int:
        """Insert events with their own ids, each once however often it is given (an archive
        read back into a scratch database); how many were new."""
        column = tables.events.c
        present = set(
            self._connection.execute(
                select(column.id).where(column.id.in_([event.id for event in events]))
            ).scalars()
        )
        rows = [
            dataclasses.asdict(event) | {"entity_type": event.entity_type.value}
            for event in events
            if event.id not in present
        ]
        if rows:
            self._connection.execute(insert(tables.events), rows)
        return len(rows)

    def remove(self, after: int, through: int) -> int:
        """Delete the events with ids after `after` through `through` (an archived range, in
        batches the caller commits one by one); how many were deleted."""
        column = tables.events.c
        result = self._connection.execute(
            delete(tables.events).where(column.id > after, column.id <= through)
        )
        return result.rowcount

    def occurred_after(self, position: int) -> dt.datetime | None:
        """When the first event after `position` happened (None when there is none)."""
        column = tables.events.c
        return self._connection.execute(
            select(column.occurred_at).where(column.id > position).order_by(column.id).limit(1)
        ).scalar()

    def _horizon(self) -> int:
        """How far a reader may read (PostgreSQL): the largest id committed when the statement
        starts, unless a writer still running announced a lower bound.

        Why no event below it can appear later: an id below the largest committed one was
        drawn before it, so before the statement started, by a writer that had announced a
        smaller bound. The locks are read after the statement's snapshot is taken: if that
        writer is still running, its bound keeps the horizon below its ids; if not, it has
        committed or rolled back, and the read, a later statement, sees whatever it committed.
        """
        return int(self._connection.execute(_HORIZON).scalar_one())


def _bounded_by_bytes(page: Select[Any], max_bytes: int) -> Select[Any]:
    """The rows of `page` (ordered by id) whose payloads, summed in order, stay within
    `max_bytes`: the first row always (alone when it is larger), the next ones while the running
    total, theirs included, is at most `max_bytes`."""
    rows = page.subquery()
    size = func.length(cast(rows.c.payload, Text))
    sized = select(
        rows, func.sum(size).over(order_by=rows.c.id).label("running"), size.label("size")
    ).subquery()
    return (
        select(*(sized.c[name] for name in tables.events.c.keys()))  # noqa: SIM118
        .where(or_(sized.c.running <= max_bytes, sized.c.running == sized.c.size))
        .order_by(sized.c.id)
    )


class ProfileRepository:
    """`mdm_profile`: one row per profiled entity per run."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, profile: StoredProfile) -> bool:
        """Insert a profile; False when this run already saved this entity (a retried run must
        not count twice). The profile's `id` is derived from (run, entity) by the caller."""
        column = tables.profiles.c
        if profile.run_id is not None:
            exists = self._connection.execute(
                select(column.id).where(
                    column.run_id == profile.run_id, column.entity_urn == profile.entity_urn
                )
            ).first()
            if exists:
                return False
        self._connection.execute(insert(tables.profiles).values(dataclasses.asdict(profile)))
        return True

    def saved_in_run(self, run_id: str, entity_urns: Sequence[str]) -> set[str]:
        """Which of the entities this run has saved already (a retried step skips them)."""
        column = tables.profiles.c
        rows = self._connection.execute(
            select(column.entity_urn).where(
                column.run_id == run_id, column.entity_urn.in_(entity_urns)
            )
        )
        return set(rows.scalars())

    def history(
        self, tenant_id: uuid.UUID, canonical_key: str, limit: int = 20
    ) -> list[StoredProfile]:
        """The entity's profiles, newest first."""
        column = tables.profiles.c
        query = (
            select(tables.profiles)
            .where(column.tenant_id == tenant_id, column.canonical_key == canonical_key)
            .order_by(column.created_at.desc(), column.id)
            .limit(limit)
        )
        return [StoredProfile(**row._asdict()) for row in self._connection.execute(query)]

    def last_profiled_at(
        self, entities: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], dt.datetime]:
        """When each (tenant, canonical key) was last profiled; absent keys never were."""
        column = tables.profiles.c
        found: dict[tuple[uuid.UUID, str], dt.datetime] = {}
        for tenant_id, keys in _keys_by_tenant(entities):
            rows = self._connection.execute(
                select(column.canonical_key, func.max(column.created_at))
                .where(column.tenant_id == tenant_id, column.canonical_key.in_(keys))
                .group_by(column.canonical_key)
            )
            found.update({(tenant_id, key): at for key, at in rows})
        return found


class ProfileStateRepository:
    """`mdm_profile_state`: what an incremental profile keeps of each table, per tenant."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _where(tenant_id: uuid.UUID, source: str, schema: str | None, table: str) -> Any:
        column = tables.profile_states.c
        return and_(
            column.tenant_id == tenant_id,
            column.source == source,
            column.schema_name == (schema or ""),
            column.table_name == table,
        )

    def get(
        self, tenant_id: uuid.UUID, source: str, schema: str | None, table: str
    ) -> tuple[TableState, int] | None:
        """The table's state and its version (for `put`), or None before its first pass."""
        column = tables.profile_states.c
        row = self._connection.execute(
            select(column.state, column.version).where(
                self._where(tenant_id, source, schema, table)
            )
        ).first()
        return None if row is None else (TableState.from_json(row.state), row.version)

    def put(
        self,
        tenant_id: uuid.UUID,
        source: str,
        schema: str | None,
        table: str,
        state: TableState,
        read_version: int | None,
        at: dt.datetime,
    ) -> bool:
        """Keep `state` if the table's state is still the one read (`read_version`, None: there
        was none); False when another pass kept one since (that one stays: both describe the
        table exactly, each at its own moment)."""
        column = tables.profile_states.c
        if read_version is None:
            dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
            values = {
                "tenant_id": tenant_id,
                "source": source,
                "schema_name": schema or "",
                "table_name": table,
                "state": state.to_json(),
                "version": 1,
                "updated_at": at,
            }
            inserted = self._connection.execute(
                dialect.insert(tables.profile_states)
                .values(values)
                .on_conflict_do_nothing()
                .returning(column.version)
            )
            return inserted.first() is not None
        updated = self._connection.execute(
            update(tables.profile_states)
            .where(self._where(tenant_id, source, schema, table), column.version == read_version)
            .values(state=state.to_json(), version=read_version + 1, updated_at=at)
        )
        return updated.rowcount == 1


class ProfileDayRepository:
    """`mdm_profile_day`: each day's counts and score of a field bound with
    `incremental.partition: day`."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def write(
        self,
        tenant_id: uuid.UUID,
        canonical_key: str,
        days: Sequence[ProfileDay],
        *,
        replace_all: bool,
    ) -> None:
        """Replace the days given (a pass reads each of its days whole); `replace_all` (a full
        profile) drops the field's other days too: the table holds no rows for them now."""
        column = tables.profile_days.c
        mine = and_(column.tenant_id == tenant_id, column.canonical_key == canonical_key)
        if replace_all:
            self._connection.execute(delete(tables.profile_days).where(mine))
        elif days:
            self._connection.execute(
                delete(tables.profile_days).where(mine, column.day.in_([d.day for d in days]))
            )
        if days:
            self._connection.execute(
                insert(tables.profile_days),
                [
                    {
                        "tenant_id": tenant_id,
                        "canonical_key": canonical_key,
                        "day": day.day,
                        "row_count": day.row_count,
                        "quality_score": day.quality_score,
                        "columns": day.columns,
                        "profile_id": day.profile_id,
                        "updated_at": day.updated_at,
                    }
                    for day in days
                ],
            )

    def first_days(
        self, entities: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], dt.date]:
        """The first day recorded of each (tenant, canonical key) that has one: where its
        table's daily asset starts."""
        column = tables.profile_days.c
        found: dict[tuple[uuid.UUID, str], dt.date] = {}
        for tenant_id, keys in _keys_by_tenant(entities):
            rows = self._connection.execute(
                select(column.canonical_key, func.min(column.day))
                .where(column.tenant_id == tenant_id, column.canonical_key.in_(keys))
                .group_by(column.canonical_key)
            )
            found.update({(tenant_id, key): day for key, day in rows})
        return found

    def list(
        self,
        tenant_id: uuid.UUID,
        canonical_key: str,
        first: dt.date | None = None,
        last: dt.date | None = None,
    ) -> list[ProfileDay]:
        """The field's days from `first` to `last` (both included), oldest first."""
        column = tables.profile_days.c
        query = select(tables.profile_days).where(
            column.tenant_id == tenant_id, column.canonical_key == canonical_key
        )
        if first is not None:
            query = query.where(column.day >= first)
        if last is not None:
            query = query.where(column.day <= last)
        return [
            ProfileDay(
                day=row.day,
                row_count=row.row_count,
                quality_score=row.quality_score,
                columns=row.columns,
                profile_id=row.profile_id,
                updated_at=row.updated_at,
            )
            for row in self._connection.execute(query.order_by(column.day))
        ]


class PolicyRepository:
    """Per-tenant overrides of who approves which lane and tier."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def overrides(self, tenant_id: uuid.UUID) -> dict[tuple[str, str], str]:
        """{(lane, tier or "*"): required_role} for the tenant."""
        column = tables.approval_policies.c
        rows = self._connection.execute(
            select(column.lane, column.tier, column.required_role).where(
                column.tenant_id == tenant_id
            )
        )
        return {(row.lane, row.tier): row.required_role for row in rows}

    def approval_counts(self, tenant_id: uuid.UUID) -> dict[tuple[str, str], int]:
        """{(lane, tier or "*"): approvers} for the tenant's overrides."""
        column = tables.approval_policies.c
        rows = self._connection.execute(
            select(column.lane, column.tier, column.approvals).where(column.tenant_id == tenant_id)
        )
        return {(row.lane, row.tier): row.approvals for row in rows}

    def set_approvals(self, tenant_id: uuid.UUID, lane: Lane, tier: str, approvals: int) -> None:
        """How many approvers the (existing) override of (lane, tier) asks for."""
        column = tables.approval_policies.c
        self._connection.execute(
            update(tables.approval_policies)
            .where(column.tenant_id == tenant_id, column.lane == lane.value, column.tier == tier)
            .values(approvals=approvals)
        )

    def set(
        self,
        tenant_id: uuid.UUID,
        lane: Lane,
        tier: str,
        required_role: str,
        actor: str,
        at: dt.datetime,
    ) -> None:
        column = tables.approval_policies.c
        key = (column.tenant_id == tenant_id, column.lane == lane.value, column.tier == tier)
        values = {"required_role": required_role, "updated_at": at, "updated_by": actor}
        if not self._connection.execute(
            update(tables.approval_policies).where(*key).values(values)
        ).rowcount:
            self._connection.execute(
                insert(tables.approval_policies).values(
                    tenant_id=tenant_id, lane=lane.value, tier=tier, **values
                )
            )


_TOKEN_BY_HASH = select(tables.api_tokens).where(
    tables.api_tokens.c.token_hash == bindparam("token_hash")
)


class TokenRepository:
    """API tokens, by the SHA-256 of their secret (the secret itself is never stored)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(
        self,
        token_id: uuid.UUID,
        token_hash: str,
        identity: Identity,
        created_at: dt.datetime,
        expires_at: dt.datetime | None,
    ) -> ApiToken:
        token = ApiToken(
            id=token_id,
            tenant_id=identity.tenant_id,
            user=identity.user,
            roles=tuple(sorted(identity.roles)),
            created_at=created_at,
            expires_at=expires_at,
            revoked_at=None,
        )
        self._connection.execute(
            insert(tables.api_tokens).values(
                id=token.id,
                token_hash=token_hash,
                tenant_id=token.tenant_id,
                user_name=token.user,
                roles=list(token.roles),
                created_at=token.created_at,
                expires_at=token.expires_at,
            )
        )
        return token

    def by_hash(self, token_hash: str) -> ApiToken | None:
        """The token with this hash; a unique index makes this one probe. The statement is
        built once: every HTTP request runs it."""
        row = self._connection.execute(_TOKEN_BY_HASH, {"token_hash": token_hash}).first()
        return _token(row) if row else None

    def get(self, token_id: uuid.UUID) -> ApiToken | None:
        row = self._connection.execute(
            select(tables.api_tokens).where(tables.api_tokens.c.id == token_id)
        ).first()
        return _token(row) if row else None

    def list(self, tenant_id: uuid.UUID | None = None) -> list[ApiToken]:
        """Tokens, oldest first; every tenant's when `tenant_id` is None (administration)."""
        query = select(tables.api_tokens)
        if tenant_id is not None:
            query = query.where(tables.api_tokens.c.tenant_id == tenant_id)
        query = query.order_by(tables.api_tokens.c.created_at, tables.api_tokens.c.id)
        return [_token(row) for row in self._connection.execute(query)]

    def revoke(self, token_id: uuid.UUID, at: dt.datetime) -> None:
        """Mark the token revoked; a token revoked before keeps its first revocation time."""
        self._connection.execute(
            update(tables.api_tokens)
            .where(tables.api_tokens.c.id == token_id, tables.api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )


def _token(row: Row[Any]) -> ApiToken:
    """A token without its hash: what administration shows and authentication checks."""
    return ApiToken(
        id=row.id,
        tenant_id=row.tenant_id,
        user=row.user_name,
        roles=tuple(row.roles),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class IncidentRepository:
    """`mdm_quality_incident`: at most one active (not resolved) incident per entity."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

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


class NotificationRepository:
    """`mdm_notification_subscription` and `mdm_notification_delivery`."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def subscribe(self, subscription: Subscription) -> None:
        row = dataclasses.asdict(subscription)
        row["events"] = list(subscription.events)
        row["min_tier"] = subscription.min_tier.value if subscription.min_tier else None
        self._connection.execute(insert(tables.notification_subscriptions).values(row))

    def subscription(self, tenant_id: uuid.UUID, subscription_id: uuid.UUID) -> Subscription | None:
        column = tables.notification_subscriptions.c
        row = self._connection.execute(
            select(tables.notification_subscriptions).where(
                column.id == subscription_id, column.tenant_id == tenant_id
            )
        ).first()
        return _subscription(row) if row else None

    def subscriptions(
        self, tenant_id: uuid.UUID | None = None, *, active_only: bool = True
    ) -> list[Subscription]:
        """A tenant's subscriptions (every tenant's with None), oldest first."""
        column = tables.notification_subscriptions.c
        query = select(tables.notification_subscriptions).order_by(column.created_at, column.id)
        if tenant_id is not None:
            query = query.where(column.tenant_id == tenant_id)
        if active_only:
            query = query.where(column.unsubscribed_at.is_(None))
        return [_subscription(row) for row in self._connection.execute(query)]

    def unsubscribe(self, subscription_id: uuid.UUID, at: dt.datetime) -> None:
        self._connection.execute(
            update(tables.notification_subscriptions)
            .where(tables.notification_subscriptions.c.id == subscription_id)
            .values(unsubscribed_at=at)
        )

    def open_delivery(self, subscription_id: uuid.UUID, group_key: str) -> Delivery | None:
        """The group's delivery if it has not been tried yet (more events may join it)."""
        column = tables.notification_deliveries.c
        row = self._connection.execute(
            select(tables.notification_deliveries).where(
                column.subscription_id == subscription_id,
                column.group_key == group_key,
                column.status == DeliveryStatus.PENDING.value,
                column.attempts == 0,
            )
        ).first()
        return _delivery(row) if row else None

    def exists(self, subscription_id: uuid.UUID, group_key: str) -> bool:
        column = tables.notification_deliveries.c
        query = select(column.id).where(
            column.subscription_id == subscription_id, column.group_key == group_key
        )
        return self._connection.execute(query).first() is not None

    def add_delivery(self, delivery: Delivery) -> None:
        self._connection.execute(
            insert(tables.notification_deliveries).values(_delivery_row(delivery))
        )

    def save_delivery(self, delivery: Delivery, *, expected_attempts: int | None = None) -> bool:
        """Store a delivery's new state; with `expected_attempts`, only if nobody recorded
        another attempt meanwhile (compare-and-set). Whether it was stored."""
        column = tables.notification_deliveries.c
        query = update(tables.notification_deliveries).where(column.id == delivery.id)
        if expected_attempts is not None:
            query = query.where(column.attempts == expected_attempts)
        return self._connection.execute(query.values(_delivery_row(delivery))).rowcount == 1

    def delivery(self, tenant_id: uuid.UUID, delivery_id: uuid.UUID) -> Delivery | None:
        column = tables.notification_deliveries.c
        row = self._connection.execute(
            select(tables.notification_deliveries).where(
                column.id == delivery_id, column.tenant_id == tenant_id
            )
        ).first()
        return _delivery(row) if row else None

    def deliveries(
        self,
        tenant_id: uuid.UUID,
        status: DeliveryStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Delivery]:
        """A tenant's deliveries, newest first."""
        column = tables.notification_deliveries.c
        query = select(tables.notification_deliveries).where(column.tenant_id == tenant_id)
        if status is not None:
            query = query.where(column.status == status.value)
        query = query.order_by(column.created_at.desc(), column.id).limit(limit).offset(offset)
        return [_delivery(row) for row in self._connection.execute(query)]

    def due(self, now: dt.datetime, limit: int) -> list[Delivery]:
        """Deliveries to try now (every tenant's), the longest waiting first."""
        column = tables.notification_deliveries.c
        query = (
            select(tables.notification_deliveries)
            .where(
                column.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.FAILED.value]),
                column.next_attempt_at <= now,
            )
            .order_by(column.next_attempt_at, column.id)
            .limit(limit)
        )
        return [_delivery(row) for row in self._connection.execute(query)]


def _subscription(row: Row[Any]) -> Subscription:
    values = row._asdict()
    return Subscription(
        **values
        | {
            "events": tuple(row.events),
            "min_tier": Tier(row.min_tier) if row.min_tier else None,
        }
    )


def _delivery_row(delivery: Delivery) -> dict[str, Any]:
    return dataclasses.asdict(delivery) | {"status": delivery.status.value}


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(**row._asdict() | {"status": DeliveryStatus(row.status)})


class ConsumerCursors:
    """`mdm_consumer_cursor`: where each reader of the outbox is (deployment-wide)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def get(self, consumer: str, *, for_update: bool = False) -> ConsumerCursor:
        """The consumer's cursor (at 0 before it first reads); `for_update` holds it to commit,
        so two readers of one consumer, or a reader and a replay, take turns."""
        query = select(tables.consumer_cursors).where(
            tables.consumer_cursors.c.consumer == consumer
        )
        if for_update:
            self._ensure(consumer)
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        return _cursor(row) if row else ConsumerCursor(consumer)

    def save(self, cursor: ConsumerCursor) -> None:
        self._ensure(cursor.consumer)
        self._connection.execute(
            update(tables.consumer_cursors)
            .where(tables.consumer_cursors.c.consumer == cursor.consumer)
            .values(_cursor_values(cursor))
        )

    def add(self, cursor: ConsumerCursor) -> bool:
        """Register a consumer at its cursor; False when it is registered already."""
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        inserted = self._connection.execute(
            dialect.insert(tables.consumer_cursors)
            .values(consumer=cursor.consumer, **_cursor_values(cursor))
            .on_conflict_do_nothing()
            .returning(tables.consumer_cursors.c.consumer)
        )
        return inserted.first() is not None

    def remove(self, consumer: str) -> bool:
        result = self._connection.execute(
            delete(tables.consumer_cursors).where(tables.consumer_cursors.c.consumer == consumer)
        )
        return result.rowcount == 1

    def all(self) -> list[ConsumerCursor]:
        rows = self._connection.execute(
            select(tables.consumer_cursors).order_by(tables.consumer_cursors.c.consumer)
        )
        return [_cursor(row) for row in rows]

    def _ensure(self, consumer: str) -> None:
        """The consumer's row exists (inserted once; a concurrent insert is not an error)."""
        column = tables.consumer_cursors.c
        if self._connection.execute(
            select(column.consumer).where(column.consumer == consumer)
        ).first():
            return
        values = {"consumer": consumer, "last_event_id": 0, "updated_at": dt.datetime.now(dt.UTC)}
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        self._connection.execute(
            dialect.insert(tables.consumer_cursors).values(values).on_conflict_do_nothing()
        )


def _cursor(row: Row[Any]) -> ConsumerCursor:
    return ConsumerCursor(
        consumer=row.consumer,
        position=row.last_event_id,
        generation=row.generation,
        replay_id=row.replay_id,
        replay_through=row.replay_through,
        resume_after=row.resume_after,
        attempts=row.attempts,
        failing_event_id=row.failing_event_id,
        last_error=row.last_error,
        updated_at=row.updated_at,
    )


def _cursor_values(cursor: ConsumerCursor) -> dict[str, Any]:
    return {
        "last_event_id": cursor.position,
        "updated_at": cursor.updated_at or dt.datetime.now(dt.UTC),
        "generation": cursor.generation,
        "replay_id": cursor.replay_id,
        "replay_through": cursor.replay_through,
        "resume_after": cursor.resume_after,
        "attempts": cursor.attempts,
        "failing_event_id": cursor.failing_event_id,
        "last_error": cursor.last_error,
    }


class EventArchiveRepository:
    """`mdm_event_archive`: what each archive run moved out of the outbox."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def horizon(self) -> int:
        """The last event id archived (0 before any archive): no event up to it is kept."""
        return int(
            self._connection.execute(
                select(func.coalesce(func.max(tables.event_archives.c.last_event_id), 0))
            ).scalar_one()
        )

    def add(self, record: ArchiveRecord) -> bool:
        """Record an archive run; False when a run starting at the same event was recorded
        (two archives at once: the other one's record stands)."""
        values = dataclasses.asdict(record) | {
            "files": list(record.files),
            "profile_outcomes": [list(outcome) for outcome in record.profile_outcomes],
        }
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        inserted = self._connection.execute(
            dialect.insert(tables.event_archives)
            .values(values)
            .on_conflict_do_nothing()
            .returning(tables.event_archives.c.id)
        )
        return inserted.first() is not None

    def list(self) -> list[ArchiveRecord]:
        column = tables.event_archives.c
        rows = self._connection.execute(select(tables.event_archives).order_by(column.id))
        return [
            ArchiveRecord(
                **{
                    name: value
                    for name, value in row._asdict().items()
                    if name not in ("id", "files", "profile_outcomes")
                },
                files=tuple(row.files),
                profile_outcomes=tuple(tuple(outcome) for outcome in row.profile_outcomes),
            )
            for row in rows
        ]


class DeadLetterRepository:
    """`mdm_dead_letter`: events the consumers set aside, one row per consumer and event."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, consumer: str, event: Event, error: str, attempts: int, at: dt.datetime) -> None:
        """Set `event` aside for `consumer`; an event set aside before (then retried, or
        replayed) is dead again, with this error."""
        dead = {
            "event": event.to_json(),
            "error": error,
            "attempts": attempts,
            "status": DeadLetterStatus.DEAD.value,
            "failed_at": at,
            "resolved_at": None,
            "resolved_by": None,
            "reason": None,
        }
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        self._connection.execute(
            dialect.insert(tables.dead_letters)
            .values(consumer=consumer, event_id=event.id, **dead)
            .on_conflict_do_update(index_elements=["consumer", "event_id"], set_=dead)
        )

    def get(self, letter_id: int, *, for_update: bool = False) -> DeadLetter | None:
        query = select(tables.dead_letters).where(tables.dead_letters.c.id == letter_id)
        if for_update:
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        return _dead_letter(row) if row else None

    def list(
        self,
        consumer: str | None = None,
        status: DeadLetterStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[DeadLetter]:
        """Oldest first."""
        column = tables.dead_letters.c
        query = select(tables.dead_letters)
        if consumer is not None:
            query = query.where(column.consumer == consumer)
        if status is not None:
            query = query.where(column.status == status.value)
        query = query.order_by(column.id).limit(limit).offset(offset)
        return [_dead_letter(row) for row in self._connection.execute(query)]

    def save(self, letter: DeadLetter) -> None:
        self._connection.execute(
            update(tables.dead_letters)
            .where(tables.dead_letters.c.id == letter.id)
            .values(
                error=letter.error,
                attempts=letter.attempts,
                status=letter.status.value,
                failed_at=letter.failed_at,
                resolved_at=letter.resolved_at,
                resolved_by=letter.resolved_by,
                reason=letter.reason,
            )
        )

    def counts(self, status: DeadLetterStatus = DeadLetterStatus.DEAD) -> dict[str, int]:
        """How many letters of each consumer are in `status`."""
        column = tables.dead_letters.c
        rows = self._connection.execute(
            select(column.consumer, func.count())
            .where(column.status == status.value)
            .group_by(column.consumer)
        )
        return {consumer: count for consumer, count in rows}


def _dead_letter(row: Row[Any]) -> DeadLetter:
    return DeadLetter(**row._asdict() | {"status": DeadLetterStatus(row.status)})


class ProfilePassRepository:
    """`mdm_profile_pass`: scheduled profiling passes and how far their planning got."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, schedule: str, tier: Tier, slot: str, at: dt.datetime) -> ProfilePass:
        """The pass of `schedule` at `slot`, recorded once however often its tick is
        evaluated."""
        values = {"schedule": schedule, "tier": tier.value, "slot": slot, "requested_at": at}
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        self._connection.execute(
            dialect.insert(tables.profile_passes).values(values).on_conflict_do_nothing()
        )
        column = tables.profile_passes.c
        row = self._connection.execute(
            select(tables.profile_passes).where(column.schedule == schedule, column.slot == slot)
        ).one()
        return _profile_pass(row)

    def get(self, pass_id: int) -> ProfilePass | None:
        row = self._connection.execute(
            select(tables.profile_passes).where(tables.profile_passes.c.id == pass_id)
        ).first()
        return _profile_pass(row) if row else None

    def next_open(self, after_id: int) -> ProfilePass | None:
        """The oldest pass after `after_id` not finished yet."""
        column = tables.profile_passes.c
        row = self._connection.execute(
            select(tables.profile_passes)
            .where(column.id > after_id, column.finished_at.is_(None))
            .order_by(column.id)
            .limit(1)
        ).first()
        return _profile_pass(row) if row else None

    def record(self, progress: PassProgress, at: dt.datetime) -> None:
        """How far the pass's planning got; a finished pass keeps its first `finished_at`."""
        column = tables.profile_passes.c
        self._connection.execute(
            update(tables.profile_passes)
            .where(column.id == progress.pass_id)
            .values(
                planned_through=list(progress.planned_through)
                if progress.planned_through
                else None,
                tables_planned=progress.tables_planned,
                runs_requested=progress.runs_requested,
                finished_at=func.coalesce(column.finished_at, at) if progress.finished else None,
            )
        )


def _profile_pass(row: Row[Any]) -> ProfilePass:
    return ProfilePass(
        id=row.id,
        schedule=row.schedule,
        tier=Tier(row.tier),
        slot=row.slot,
        requested_at=row.requested_at,
        planned_through=tuple(row.planned_through) if row.planned_through else None,  # type: ignore[arg-type]
        tables_planned=row.tables_planned,
        runs_requested=row.runs_requested,
        finished_at=row.finished_at,
    )


def profile_outcome_counts(
    connection: Connection, *, after: int, through: int | None
) -> list[tuple[uuid.UUID, str, str, int]]:
    """(tenant, tier, outcome, count) of the profile events with ids after `after` (through
    `through`), outcome `completed` or `failed`."""
    column = tables.events.c
    tier = column.payload["tier"].as_string()
    query = (
        select(column.tenant_id, tier, column.type, func.count())
        .where(column.type.in_(PROFILE_OUTCOMES), column.id > after)
        .group_by(column.tenant_id, tier, column.type)
    )
    if through is not None:
        query = query.where(column.id <= through)
    return [
        (tenant, tier, kind.rsplit(".", 1)[-1], count)
        for tenant, tier, kind, count in connection.execute(query)
    ]


class CatalogMetrics:
    """Aggregates `/metrics` reports, read from the store at scrape time so every replica
    reports the same truth. Each is one grouped query."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def latest_scores(self) -> list[tuple[uuid.UUID, str, str, float]]:
        """(tenant, canonical key, tier, score) of each tier1/tier2 field's latest profile."""
        entity, profile = tables.global_metadata.c, tables.profiles.c
        later = tables.profiles.alias("later").c
        newest = (
            select(func.max(later.created_at))
            .where(later.tenant_id == entity.tenant_id, later.canonical_key == entity.canonical_key)
            .correlate(tables.global_metadata)
            .scalar_subquery()
        )
        query = (
            select(entity.tenant_id, entity.canonical_key, entity.tier, profile.quality_score)
            .join(
                tables.profiles,
                and_(
                    profile.tenant_id == entity.tenant_id,
                    profile.canonical_key == entity.canonical_key,
                ),
            )
            .where(
                entity.tier.in_([Tier.TIER1.value, Tier.TIER2.value]),
                profile.created_at == newest,
                profile.quality_score.is_not(None),
            )
        )
        latest = {
            (tenant, key): (tier, score)
            for tenant, key, tier, score in self._connection.execute(query)
        }
        # Two profiles saved at the same instant would be two series with one name: one wins.
        return [(tenant, key, tier, score) for (tenant, key), (tier, score) in latest.items()]

    def open_incidents(self) -> list[tuple[uuid.UUID, str, int]]:
        column = tables.quality_incidents.c
        query = (
            select(column.tenant_id, column.tier, func.count())
            .where(column.status != IncidentStatus.RESOLVED.value)
            .group_by(column.tenant_id, column.tier)
        )
        return [tuple(row) for row in self._connection.execute(query)]

    def profile_outcomes(self) -> list[tuple[uuid.UUID, str, str, int]]:
        """(tenant, tier, outcome, count): every profile event the outbox holds, and those
        archived from it (so the count never goes down)."""
        counts: dict[tuple[uuid.UUID, str, str], int] = {}
        for tenant, tier, outcome, count in profile_outcome_counts(
            self._connection, after=0, through=None
        ):
            counts[(tenant, tier, outcome)] = counts.get((tenant, tier, outcome), 0) + count
        archived = self._connection.execute(select(tables.event_archives.c.profile_outcomes))
        for outcomes in archived.scalars():
            for tenant, tier, outcome, count in outcomes:
                found = (uuid.UUID(tenant), tier, outcome)
                counts[found] = counts.get(found, 0) + count
        return [(tenant, tier, outcome, count) for (tenant, tier, outcome), count in counts.items()]

    def profile_durations(
        self, buckets: Sequence[float]
    ) -> list[tuple[str, list[int], int, float]]:
        """Per tier: cumulative counts of profiles within each bucket (seconds), the count and
        the sum of durations: a histogram computed by the database."""
        profile, entity = tables.profiles.c, tables.global_metadata.c
        seconds = profile.duration_ms / 1000.0
        query = (
            select(
                entity.tier,
                *(func.sum(case((seconds <= bound, 1), else_=0)) for bound in buckets),
                func.count(),
                func.coalesce(func.sum(seconds), 0.0),
            )
            .join(
                tables.global_metadata,
                and_(
                    entity.tenant_id == profile.tenant_id,
                    entity.canonical_key == profile.canonical_key,
                ),
            )
            .where(profile.duration_ms.is_not(None))
            .group_by(entity.tier)
        )
        return [
            (row[0], [int(n or 0) for n in row[1 : 1 + len(buckets)]], row[-2], float(row[-1]))
            for row in self._connection.execute(query)
        ]

    def pending_approvals(self) -> list[tuple[uuid.UUID, str, str, int, dt.datetime]]:
        """(tenant, tier, lane, count, oldest requested_at) of pending requests."""
        column = tables.approvals.c
        query = (
            select(
                column.tenant_id,
                column.tier,
                column.lane,
                func.count(),
                func.min(column.requested_at),
            )
            .where(column.status == ApprovalStatus.PENDING.value)
            .group_by(column.tenant_id, column.tier, column.lane)
        )
        return [
            (tenant, tier, lane, count, _utc(oldest))
            for tenant, tier, lane, count, oldest in self._connection.execute(query)
        ]

    def overdue_approvals(
        self, requested_before: dict[Tier, dt.datetime]
    ) -> list[tuple[uuid.UUID, str, int]]:
        """(tenant, tier, count) of pending requests past their deadline, for each tier with
        one (`requested_before`: a request of that tier requested earlier is overdue); a
        tenant with pending requests of such a tier but none overdue counts 0."""
        if not requested_before:
            return []
        column = tables.approvals.c
        late = or_(
            *(
                and_(column.tier == tier.value, column.requested_at <= before)
                for tier, before in requested_before.items()
            )
        )
        query = (
            select(column.tenant_id, column.tier, func.sum(case((late, 1), else_=0)))
            .where(
                column.status == ApprovalStatus.PENDING.value,
                column.tier.in_([tier.value for tier in requested_before]),
            )
            .group_by(column.tenant_id, column.tier)
        )
        return [
            (tenant, tier, int(count or 0))
            for tenant, tier, count in self._connection.execute(query)
        ]

    def decisions(self) -> list[tuple[uuid.UUID, str, int]]:
        column = tables.approvals.c
        query = (
            select(column.tenant_id, column.status, func.count())
            .where(column.status != ApprovalStatus.PENDING.value)
            .group_by(column.tenant_id, column.status)
        )
        return [tuple(row) for row in self._connection.execute(query)]

    def decision_times(self) -> Iterator[tuple[str, dt.datetime, dt.datetime]]:
        """(tier, requested_at, decided_at) of decided requests, streamed."""
        column = tables.approvals.c
        query = select(column.tier, column.requested_at, column.decided_at).where(
            column.decided_at.is_not(None)
        )
        for tier, requested, decided in self._connection.execution_options(yield_per=5000).execute(
            query
        ):
            yield tier, _utc(requested), _utc(decided)

    def last_event_id(self) -> int:
        return self._connection.execute(select(func.max(tables.events.c.id))).scalar() or 0

    def deliveries(self) -> list[tuple[str, int]]:
        column = tables.notification_deliveries.c
        query = select(column.status, func.count()).group_by(column.status)
        return [tuple(row) for row in self._connection.execute(query)]


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


_SESSION_IDENTITY = (
    select(tables.api_tokens, tables.console_sessions.c.last_seen_at.label("session_last_seen_at"))
    .join_from(
        tables.console_sessions,
        tables.api_tokens,
        tables.api_tokens.c.id == tables.console_sessions.c.token_id,
    )
    .where(
        tables.console_sessions.c.session_hash == bindparam("session_hash"),
        tables.console_sessions.c.expires_at > bindparam("now"),
        tables.console_sessions.c.last_seen_at > bindparam("idle_since"),
        tables.api_tokens.c.revoked_at.is_(None),
        (tables.api_tokens.c.expires_at.is_(None))
        | (tables.api_tokens.c.expires_at > bindparam("now")),
    )
)


class ConsoleSessionRepository:
    """Steward console sessions, by the SHA-256 of their opaque id, each tied to a token; the
    sign-in attempts counted per client and minute; the server's keys."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(
        self,
        session_hash: str,
        token: ApiToken,
        created_at: dt.datetime,
        expires_at: dt.datetime,
    ) -> None:
        self._connection.execute(
            insert(tables.console_sessions).values(
                session_hash=session_hash,
                tenant_id=token.tenant_id,
                token_id=token.id,
                created_at=created_at,
                expires_at=expires_at,
                last_seen_at=created_at,
            )
        )

    def live_session(
        self, session_hash: str, now: dt.datetime, idle_since: dt.datetime
    ) -> tuple[ApiToken, dt.datetime] | None:
        """The token of a session that has not expired nor been idle since `idle_since`, while
        that token is live, and when the session was last seen (one probe by primary key,
        joined to the token: revocation ends the session at once)."""
        row = self._connection.execute(
            _SESSION_IDENTITY,
            {"session_hash": session_hash, "now": now, "idle_since": idle_since},
        ).first()
        return (_token(row), row.session_last_seen_at) if row else None

    def seen(self, session_hash: str, at: dt.datetime, unless_seen_since: dt.datetime) -> None:
        """Note that the session was used `at`, unless that was noted since `unless_seen_since`
        already (so concurrent pages write it once)."""
        column = tables.console_sessions.c
        self._connection.execute(
            update(tables.console_sessions)
            .where(column.session_hash == session_hash, column.last_seen_at < unless_seen_since)
            .values(last_seen_at=at)
        )

    def end(self, session_hash: str) -> None:
        self._connection.execute(
            delete(tables.console_sessions).where(
                tables.console_sessions.c.session_hash == session_hash
            )
        )

    def end_for_token(self, token_id: uuid.UUID) -> None:
        """End all of a token's sessions."""
        self._connection.execute(
            delete(tables.console_sessions).where(tables.console_sessions.c.token_id == token_id)
        )

    def end_stale(self, token_id: uuid.UUID, now: dt.datetime, idle_since: dt.datetime) -> None:
        """End a token's sessions that have expired by `now` or not been seen since
        `idle_since`."""
        column = tables.console_sessions.c
        self._connection.execute(
            delete(tables.console_sessions).where(
                column.token_id == token_id,
                (column.expires_at <= now) | (column.last_seen_at <= idle_since),
            )
        )

    def count_login_attempt(self, client_hash: str, minute: int) -> int:
        """Count one sign-in attempt of a client in a minute and return the minute's count so
        far (one atomic upsert: concurrent attempts, from any process, each get their own
        number); earlier minutes' counts are dropped."""
        column = tables.console_login_attempts.c
        self._connection.execute(
            delete(tables.console_login_attempts).where(column.minute < minute)
        )
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        upsert = dialect.insert(tables.console_login_attempts).values(
            client_hash=client_hash, minute=minute, attempts=1
        )
        return self._connection.execute(
            upsert.on_conflict_do_update(
                index_elements=[column.client_hash, column.minute],
                set_={"attempts": column.attempts + 1},
            ).returning(column.attempts)
        ).scalar_one()

    def server_key(self, name: str, candidate: str, at: dt.datetime) -> str:
        """The key called `name`, made from `candidate` if there is none yet. Two processes
        making it at once end with one key: the second insert does nothing (waiting for the
        first to commit) and both read the row that won."""
        column = tables.server_keys.c
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        self._connection.execute(
            dialect.insert(tables.server_keys)
            .values(name=name, secret=candidate, created_at=at)
            .on_conflict_do_nothing(index_elements=[column.name])
        )
        return self._connection.execute(
            select(column.secret).where(column.name == name)
        ).scalar_one()


# Expired keys purged per claim at most: the table stays bounded without a job of its own, and
# no request waits on another's purge (rows another transaction holds are skipped).
PURGE_BATCH = 100


class IdempotencyKeyRepository:
    """Idempotency keys and their answers (`mdm_idempotency_key`), per tenant."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def claim(
        self,
        tenant_id: uuid.UUID,
        request: KeyedRequest,
        now: dt.datetime,
        expires_at: dt.datetime,
    ) -> StoredKey | None:
        """Take `request.key` for this transaction's request (None), or return what an earlier
        request stored under it. An expired key is taken anew.

        On PostgreSQL a transaction that took the same key and has not committed makes this
        wait for it (the primary key's index), up to the store's lock timeout: when it commits,
        its answer is returned; when it rolls back, the key is taken here. On SQLite the write
        lock serialises the two."""
        keys = tables.idempotency_keys
        self._purge_expired(now)
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        inserted = self._connection.execute(
            dialect.insert(keys)
            .values(
                tenant_id=tenant_id,
                idempotency_key=request.key,
                fingerprint=request.fingerprint,
                created_at=now,
                expires_at=expires_at,
            )
            .on_conflict_do_nothing()
            .returning(keys.c.fingerprint)
        ).first()
        if inserted is not None:
            return None
        this_key = (keys.c.tenant_id == tenant_id) & (keys.c.idempotency_key == request.key)
        renewed = self._connection.execute(
            update(keys)
            .where(this_key, keys.c.expires_at <= now)
            .values(
                fingerprint=request.fingerprint,
                status_code=None,
                response_body=None,
                location=None,
                created_at=now,
                expires_at=expires_at,
            )
        )
        if renewed.rowcount == 1:
            return None
        row = self._connection.execute(select(keys).where(this_key)).one()
        answer = (
            Answer(row.status_code, bytes(row.response_body), row.location)
            if row.status_code is not None
            else None
        )
        return StoredKey(row.fingerprint, answer, row.expires_at)

    def record(self, tenant_id: uuid.UUID, key: str, answer: Answer) -> None:
        """Store the answer of the request that claimed `key`, in its transaction."""
        keys = tables.idempotency_keys
        self._connection.execute(
            update(keys)
            .where(keys.c.tenant_id == tenant_id, keys.c.idempotency_key == key)
            .values(
                status_code=answer.status,
                response_body=answer.body,
                location=answer.location,
            )
        )

    def _purge_expired(self, now: dt.datetime) -> None:
        keys = tables.idempotency_keys
        expired = (
            select(keys.c.tenant_id, keys.c.idempotency_key)
            .where(keys.c.expires_at <= now)
            .limit(PURGE_BATCH)
            .with_for_update(skip_locked=True)
        )
        self._connection.execute(
            delete(keys).where(tuple_(keys.c.tenant_id, keys.c.idempotency_key).in_(expired))
        )


class LineageRepository:
    """Tenant names, the catalog as a graph (every tenant's bound fields and active KPIs), the
    latest profile of each field, and each KPI's trust state (`mdm_kpi_trust`)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

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
            _live_entity(EntityType.GLOBAL_METADATA, row) for row in self._connection.execute(query)
        ]

    def active_kpis(self, tenant_id: uuid.UUID | None = None) -> list[LiveEntity]:
        """Active KPIs, of one tenant or of every tenant, by tenant and key."""
        table = tables.kpis
        query = select(table).where(table.c.status == EntityStatus.ACTIVE.value)
        if tenant_id is not None:
            query = query.where(table.c.tenant_id == tenant_id)
        query = query.order_by(table.c.tenant_id, table.c.canonical_key)
        return [_live_entity(EntityType.KPI, row) for row in self._connection.execute(query)]

    def latest_profiles(
        self, tenant_id: uuid.UUID, keys: Sequence[str]
    ) -> dict[str, tuple[float | None, dt.datetime]]:
        """The latest profile's (score, time) of each field among `keys` that has one."""
        column = tables.profiles.c
        found: dict[str, tuple[float | None, dt.datetime]] = {}
        for _tenant, chunk in _keys_by_tenant([(tenant_id, key) for key in keys]):
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
        for _tenant, chunk in _keys_by_tenant([(tenant_id, key) for key in keys]):
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
