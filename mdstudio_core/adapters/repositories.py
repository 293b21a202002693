"""Repositories: the only code that writes SQL against the store. Each works on the connection of
one unit of work, so whatever they do commits or rolls back together."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from mdstudio_core.adapters import tables
from mdstudio_core.domain.approvals import Approval, ApprovalListing
from mdstudio_core.domain.events import Event, NewEvent
from mdstudio_core.domain.incidents import Incident, IncidentStatus, ProfileOutcome
from mdstudio_core.domain.model import (
    BOOKKEEPING_FIELDS,
    ApiToken,
    ApprovalStatus,
    EntityStatus,
    EntityType,
    Identity,
    Lane,
    LiveEntity,
    Tier,
    stored_binding,
)
from mdstudio_core.domain.quality import StoredProfile

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


class ApprovalRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, approval: Approval) -> None:
        values = {
            field.name: getattr(approval, field.name) for field in dataclasses.fields(approval)
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
        return _approval_from_row(row) if row else None

    def record_decision(self, decided: Approval) -> bool:
        """Store a decided request if it is still pending; False when it was not (the
        compare-and-set that makes a second decision impossible on every backend)."""
        result = self._connection.execute(
            update(tables.approvals)
            .where(
                tables.approvals.c.id == decided.id,
                tables.approvals.c.status == ApprovalStatus.PENDING.value,
            )
            .values(
                status=decided.status.value,
                decided_by=decided.decided_by,
                decided_at=decided.decided_at,
                decision_reason=decided.decision_reason,
            )
        )
        return result.rowcount == 1

    def list(
        self,
        tenant_id: uuid.UUID,
        *,
        status: ApprovalStatus | None = None,
        entity_type: EntityType | None = None,
        tier: Tier | None = None,
        lane: Lane | None = None,
        entity_key: str | None = None,
        limit: int = 50,
        offset: int = 0,
        include_payload: bool = False,
    ) -> list[ApprovalListing]:
        """The inbox: newest first, served by the (tenant, status, requested_at) index. The
        payload and current state are read as JSON text, and only with `include_payload`."""
        column = tables.approvals.c
        filters = [column.tenant_id == tenant_id]
        for value, col in (
            (status, column.status),
            (entity_type, column.entity_type),
            (tier, column.tier),
            (lane, column.lane),
        ):
            if value is not None:
                filters.append(col == value.value)
        if entity_key is not None:
            filters.append(column.entity_key == entity_key)
        selected = [c for c in tables.approvals.c if c.name not in ("payload", "current_state")]
        if include_payload:
            selected += [
                cast(column.payload, Text).label("payload_json"),
                cast(column.current_state, Text).label("current_state_json"),
            ]
        query = (
            select(*selected)
            .where(and_(*filters))
            .order_by(column.requested_at.desc(), column.id.desc())
            .limit(limit)
            .offset(offset)
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

    def bound(self, tier: Tier) -> list[LiveEntity]:
        """Active metadata entities of a tier, in every tenant, that are bound to a table: what
        a scheduled profiling pass covers."""
        table = tables.global_metadata
        query = (
            select(table)
            .where(
                table.c.tier == tier.value,
                table.c.status == EntityStatus.ACTIVE.value,
                table.c.binding.is_not(None),
            )
            .order_by(table.c.tenant_id, table.c.canonical_key)
        )
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
        if self._connection.dialect.name == "postgresql":
            self._connection.execute(_ANNOUNCE_BOUND)
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
        return [
            Event(**dataclasses.asdict(event), id=event_id)
            for event, event_id in zip(new_events, ids, strict=True)
        ]

    def list(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        tenant_id: uuid.UUID | None = None,
        entity_key: str | None = None,
        max_bytes: int | None = None,
    ) -> list[Event]:
        """Events with `id > after`, oldest first; across tenants when `tenant_id` is None
        (the Dagster sensor), otherwise one tenant's. With `max_bytes`, the page stops before
        the event whose payload would take it past that many bytes of JSON (it always holds
        one event), counted in the database, so no more than that is ever read."""
        column = tables.events.c
        query = select(tables.events).where(column.id > after)
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
                entity_type=EntityType(row.entity_type),
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
