"""What the outbox's consumers keep: their cursors, the events they gave up on, and the archives
the outbox was trimmed into."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import Row, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository
from mdstudio_core.domain.consumers import ConsumerCursor, DeadLetter, DeadLetterStatus
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.retention import ArchiveRecord


class ConsumerCursors(Repository):
    """`mdm_consumer_cursor`: where each reader of the outbox is (deployment-wide)."""

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


class EventArchiveRepository(Repository):
    """`mdm_event_archive`: what each archive run moved out of the outbox."""

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


class DeadLetterRepository(Repository):
    """`mdm_dead_letter`: events the consumers set aside, one row per consumer and event."""

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
