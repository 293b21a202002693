"""The transactional outbox, `mdm_event`, and the lock protocol that lets readers page it by id
without ever skipping an event committed late."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Select, Text, cast, delete, func, insert, or_, select, text

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.metrics import profile_outcome_counts
from mdstudio_core.adapters.repositories.shared import UNNEST_FROM, Repository
from mdstudio_core.domain.events import (
    PROFILE_OUTCOMES,
    Event,
    EventType,
    NewEvent,
    ProfileCompleted,
    ProfileFailed,
    entity_kind,
    parse_payload,
)
from mdstudio_core.domain.incidents import ProfileOutcome

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


_INSERT_UNNESTED = text(
    "INSERT INTO mdm_event"
    " (type, tenant_id, entity_type, entity_key, correlation_id, actor, occurred_at, payload)"
    " SELECT event->>'type', CAST(event->>'tenant_id' AS uuid), event->>'entity_type',"
    " event->>'entity_key', CAST(event->>'correlation_id' AS uuid), event->>'actor',"
    " CAST(event->>'occurred_at' AS timestamptz), event->'payload'"
    " FROM jsonb_array_elements(CAST(:batch AS jsonb)) WITH ORDINALITY AS batch(event, position)"
    " ORDER BY position RETURNING id"
)


class EventOutbox(Repository):
    """`mdm_event`, the transactional outbox the Dagster sensor and API consumers read."""

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
        if postgresql and len(new_events) > UNNEST_FROM:
            ids: Iterable[int] = self._append_unnested(new_events)
        else:
            ids = self._connection.execute(
                insert(tables.events).returning(tables.events.c.id, sort_by_parameter_order=True),
                [_event_row(event) for event in new_events],
            ).scalars()
        # `vars`, not `dataclasses.asdict`: no deep copy of every payload (a change set
        # appends tens of thousands of events at once).
        return [
            Event(**vars(event), id=event_id)
            for event, event_id in zip(new_events, ids, strict=True)
        ]

    def _append_unnested(self, new_events: Sequence[NewEvent]) -> list[int]:
        """A large batch on PostgreSQL (a change set's): one statement over one JSON array.
        The multi-row VALUES the batch would otherwise be sent as costs the driver a rewrite per
        parameter (`bench/change_sets.py`); one JSON text costs it nothing, and
        PostgreSQL reads it in C. Rows are inserted, and so draw their ids, in the batch's
        order, so the ids sorted are the events' in order."""
        batch = orjson.dumps([_event_row(event) for event in new_events]).decode()
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
        return [_profile_outcome(event_type, payload) for event_type, payload in rows]

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


def _profile_outcome(event_type: str, payload: dict[str, Any]) -> ProfileOutcome:
    """A past check result, as its incident rules read it: a failed profile fails the check."""
    if event_type == EventType.PROFILE_FAILED:
        failed = parse_payload(event_type, payload, ProfileFailed)
        return ProfileOutcome(
            passed=False, quality_score=None, profile_id=None, run_id=failed.run_id
        )
    completed = parse_payload(event_type, payload, ProfileCompleted)
    return ProfileOutcome(
        passed=completed.check_passed,
        quality_score=completed.quality_score,
        profile_id=completed.profile_id,
        run_id=completed.run_id,
    )


def _event_row(event: NewEvent) -> dict[str, Any]:
    """An event as its `mdm_event` row (less the id the sequence draws)."""
    return {
        "type": event.type,
        "tenant_id": event.tenant_id,
        "entity_type": event.entity_type.value,
        "entity_key": event.entity_key,
        "correlation_id": event.correlation_id,
        "actor": event.actor,
        "occurred_at": event.occurred_at,
        "payload": event.payload,
    }


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
