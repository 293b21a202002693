"""The outbox's consumers, operated: register, list, replay, dead letters; and a consumer's pass.

These are operator commands: they act on the deployment's store, not in a tenant. Two kinds of
consumers advance their cursors:

* a consumer whose effects are rows of the store (`notification_sensor`'s deliveries, an
  external consumer written in Python) runs `consume`: its effects, its cursor, its failed
  attempts and its dead letters commit in one transaction, each event in a savepoint of its
  own, so an event either has all its effects or none, exactly once;
* a consumer whose effects are committed elsewhere (`approval_sensor`: Dagster commits its run
  requests with its own cursor) keys its effects by event ids (and by the replay or retry they
  belong to), so doing them again asks for nothing new, and tells the store what the
  orchestrator committed at its next pass (`resume`). A replay or registration moves the
  store's cursor to a new `generation`, which then counts over the orchestrator's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from sqlalchemy.exc import InterfaceError, OperationalError

from mdstudio_core.config import Settings
from mdstudio_core.domain import clock
from mdstudio_core.domain.consumers import (
    BUILTIN_CONSUMERS,
    ERROR_CHARS,
    ConsumerCursor,
    ConsumerStatus,
    DeadLetter,
    DeadLetterStatus,
    check_consumer_name,
)
from mdstudio_core.domain.errors import Conflict, InvalidInput, NotFound, StoreTimeout
from mdstudio_core.domain.events import (
    DEPLOYMENT_TENANT,
    DeploymentEntity,
    Event,
    EventsReplayed,
    EventType,
    NewEvent,
    validate_event,
)
from mdstudio_core.domain.retention import check_resume
from mdstudio_core.service_layer.catalog import check_page
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

# Failures of the environment, not of an event: the pass stops and is tried again, with no
# attempt counted against the event (a store outage must not fill the dead letters).
ENVIRONMENT_ERRORS = (OperationalError, InterfaceError, StoreTimeout)
# Letters handed back by `retry` that one pass handles at most.
RETRIES_PER_PASS = 100

# What a consumer does with one event, in the caller's unit of work; `key` is the replay's or
# the retry's (`replay:<id>`, `retry:<letter>:<attempts>`) that its effects are keyed by, or None.
Handler = Callable[[UnitOfWork, Event, str | None], None]


# -- operators -----------------------------------------------------------------------------


def register(
    uow: UnitOfWork, name: str, from_event_id: int | None, now: dt.datetime
) -> ConsumerCursor:
    """A new external consumer, at the outbox's head (or just before `from_event_id`)."""
    name = check_consumer_name(name)
    if name in BUILTIN_CONSUMERS:
        raise Conflict(f"{name} is a built-in consumer: it is always registered")
    with uow:
        head = uow.events.head()
        if from_event_id is None:
            position = head
        elif not 1 <= from_event_id <= head + 1:
            raise InvalidInput(
                f"must be an event id from 1 to {head + 1} (the next event)", field="from"
            )
        else:
            check_resume(from_event_id - 1, uow.archives.horizon())
            position = from_event_id - 1
        cursor = ConsumerCursor(name, position=position, updated_at=now)
        if not uow.cursors.add(cursor):
            raise Conflict(f"a consumer named {name} is registered already")
        uow.commit()
    return cursor


def unregister(uow: UnitOfWork, name: str) -> None:
    """Forget an external consumer (its dead letters stay on the record)."""
    if name in BUILTIN_CONSUMERS:
        raise Conflict(f"{name} is a built-in consumer: it cannot be unregistered")
    with uow:
        if not uow.cursors.remove(name):
            raise NotFound(f"consumer {name} not found")
        uow.commit()


def acknowledge(uow: UnitOfWork, name: str, event_id: int, now: dt.datetime) -> ConsumerCursor:
    """An external consumer that reads the stream itself (`GET /events`) says how far it has
    handled it. A cursor only moves forward here; `replay` moves it back."""
    if name in BUILTIN_CONSUMERS:
        raise Conflict(f"{name} keeps its own cursor")
    with uow:
        cursor = _existing(uow, name)
        head = uow.events.head()
        if event_id < cursor.position:
            raise InvalidInput(
                f"{name} is at {cursor.position} already; to handle events again, replay them",
                field="event_id",
            )
        if event_id > head:
            raise InvalidInput(f"there is no event {event_id} yet (the last is {head})", "event_id")
        moved = cursor.moved_to(event_id, now)
        uow.cursors.save(moved)
        uow.commit()
    return moved


def list_consumers(uow: UnitOfWork, now: dt.datetime) -> list[ConsumerStatus]:
    """Every consumer: the built-in ones and the registered ones, with what they lag by."""
    with uow:
        head = uow.events.head()
        cursors = {cursor.consumer: cursor for cursor in uow.cursors.all()}
        dead = uow.dead_letters.counts()
        found = []
        for name in sorted({*BUILTIN_CONSUMERS, *cursors}):
            cursor = cursors.get(name, ConsumerCursor(name))
            lag = max(head - cursor.position, 0)
            oldest = uow.events.occurred_after(cursor.position) if lag else None
            found.append(
                ConsumerStatus(
                    name=name,
                    position=cursor.position,
                    lag_events=lag,
                    lag_seconds=round(max((now - oldest).total_seconds(), 0.0), 3)
                    if oldest
                    else 0.0,
                    dead_letters=dead.get(name, 0),
                    replaying={
                        "replay_id": cursor.replay_id,
                        "through": cursor.replay_through,
                        "resume_after": cursor.resume_after,
                    }
                    if cursor.replaying and cursor.replay_id and cursor.replay_through
                    else None,
                    failing={
                        "event_id": cursor.failing_event_id,
                        "attempts": cursor.attempts,
                        "error": cursor.last_error,
                    }
                    if cursor.failing_event_id
                    else None,
                )
            )
    return found


@dataclass(frozen=True)
class ReplayRange:
    consumer: str
    first: int
    through: int


def replay_range(uow: UnitOfWork, name: str, first: int, last: int | None) -> ReplayRange:
    """The events a replay of `name` from `first` (to `last`) would hand it again; nothing is
    changed (a dry run lists what they would cause)."""
    with uow:
        cursor = _existing(uow, name)
        archived = uow.archives.horizon()
    planned = cursor.replayed(0, first, last, clock.now())
    check_resume(first - 1, archived)
    assert planned.replay_through is not None
    return ReplayRange(name, first, planned.replay_through)


def replay(
    uow: UnitOfWork, actor: str, name: str, first: int, last: int | None, now: dt.datetime
) -> Event:
    """Move `name` back to handle events `first` to `last` (to where it got, when `last` is
    None) again, as a new pass keyed by the returned `events.replayed` event's id; recorded in
    the same transaction."""
    with uow:
        cursor = _existing(uow, name, for_update=True)
        through = cursor.replayed(0, first, last, now).replay_through
        check_resume(first - 1, uow.archives.horizon())
        assert through is not None
        [event] = uow.events.append(
            [
                NewEvent(
                    type=EventType.EVENTS_REPLAYED,
                    tenant_id=DEPLOYMENT_TENANT,
                    entity_type=DeploymentEntity.CONSUMER,
                    entity_key=name,
                    correlation_id=uuid.uuid4(),
                    actor=actor,
                    occurred_at=now,
                    payload=validate_event(
                        EventType.EVENTS_REPLAYED,
                        EventsReplayed(
                            consumer=name,
                            from_event_id=first,
                            to_event_id=through,
                            requested_by=actor,
                        ),
                    ),
                )
            ]
        )
        uow.cursors.save(cursor.replayed(event.id, first, last, now))
        uow.commit()
    return event


def events_between(
    uow_factory: Callable[[], UnitOfWork], first: int, through: int, page: int = 1000
) -> Iterator[list[Event]]:
    """The outbox's events `first` to `through`, a page at a time."""
    after = first - 1
    while after < through:
        with uow_factory() as uow:
            events = uow.events.list(after=after, limit=page, through=through)
        if not events:
            return
        yield events
        after = events[-1].id


def dead_letters(
    uow: UnitOfWork,
    consumer: str | None = None,
    status: DeadLetterStatus | str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[DeadLetter]:
    check_page(limit, offset, "offset")
    if status is not None and not isinstance(status, DeadLetterStatus):
        try:
            status = DeadLetterStatus(status)
        except ValueError as exc:
            raise InvalidInput("not a dead letter status", field="status") from exc
    with uow:
        return uow.dead_letters.list(consumer, status, limit, offset)


def retry(uow: UnitOfWork, actor: str, letter_id: int, now: dt.datetime) -> DeadLetter:
    """Hand a dead letter back: its consumer handles the event at its next pass, its effects
    keyed by this retry."""
    with uow:
        letter = _letter(uow, letter_id, DeadLetterStatus.DEAD)
        again = replace(letter, status=DeadLetterStatus.RETRYING, resolved_by=actor)
        uow.dead_letters.save(again)
        uow.commit()
    return again


def discard(
    uow: UnitOfWork, actor: str, letter_id: int, reason: str, now: dt.datetime
) -> DeadLetter:
    """Drop a dead letter on the record: who, when and why."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a reason is required", field="reason")
    with uow:
        letter = _letter(uow, letter_id, DeadLetterStatus.DEAD, DeadLetterStatus.RETRYING)
        dropped = replace(
            letter,
            status=DeadLetterStatus.DISCARDED,
            resolved_at=now,
            resolved_by=actor,
            reason=reason,
        )
        uow.dead_letters.save(dropped)
        uow.commit()
    return dropped


def _existing(uow: UnitOfWork, name: str, *, for_update: bool = False) -> ConsumerCursor:
    """The cursor of a built-in or registered consumer; an unknown name is not found."""
    if name not in BUILTIN_CONSUMERS and name not in {c.consumer for c in uow.cursors.all()}:
        raise NotFound(f"consumer {name} not found (mdstudio events consumers lists them)")
    return uow.cursors.get(name, for_update=for_update)


def _letter(uow: UnitOfWork, letter_id: int, *allowed: DeadLetterStatus) -> DeadLetter:
    letter = uow.dead_letters.get(letter_id, for_update=True)
    if letter is None:
        raise NotFound(f"dead letter {letter_id} not found")
    if letter.status not in allowed:
        raise Conflict(f"dead letter {letter_id} is {letter.status.value}")
    return letter


# -- consumers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pass:
    """What one pass of a consumer did."""

    read: int = 0
    handled: int = 0
    dead_lettered: int = 0
    retried: int = 0
    failing: int | None = None  # the event it stopped at, to try again at its next pass


def consume(
    uow: UnitOfWork, consumer: str, handle: Handler, *, settings: Settings, max_events: int
) -> Pass:
    """One pass of a consumer whose effects are rows of the store: the letters handed back to
    it, then up to `max_events` events after its cursor, all in one savepoint or, when one
    fails, each in its own; the effects, the cursor, the attempts and the dead letters commit
    together. An event that
    fails stops the pass there (it is tried again at the next pass) until it has failed
    `MDSTUDIO_CONSUMER_MAX_ATTEMPTS` times in a row; then it is set aside as a dead letter and
    the pass goes on."""
    now = clock.now()
    with uow:
        cursor = uow.cursors.get(consumer, for_update=True)
        retried = 0
        for letter in uow.dead_letters.list(
            consumer, DeadLetterStatus.RETRYING, limit=RETRIES_PER_PASS
        ):
            error = _attempt(uow, handle, Event.from_json(letter.event), letter.key, settings)
            uow.dead_letters.save(_retried(letter, error, now))
            retried += error is None
        events = uow.events.list(
            after=cursor.position, limit=max_events, through=cursor.read_through
        )
        if events and _all_handled(uow, handle, events, cursor.key):
            uow.cursors.save(cursor.moved_to(events[-1].id, now))
            uow.commit()
            return Pass(len(events), len(events), 0, retried, None)
        handled = dead = 0
        failing = None
        for event in events:
            error = _attempt(uow, handle, event, cursor.key, settings)
            if error is None:
                cursor = cursor.moved_to(event.id, now)
                handled += 1
                continue
            failure = cursor.failed(event.id, error, settings.consumer_max_attempts, now)
            if not failure.dead:
                cursor, failing = failure.cursor, event.id
                break
            uow.dead_letters.add(consumer, event, error, failure.attempts, now)
            cursor = failure.cursor.moved_to(event.id, now)
            dead += 1
        uow.cursors.save(cursor)
        uow.commit()
    return Pass(len(events), handled, dead, retried, failing)


def _all_handled(uow: UnitOfWork, handle: Handler, events: list[Event], key: str | None) -> bool:
    """The page in one savepoint: True when every event was handled; else nothing of it is
    kept, and the caller handles the events one savepoint each to find the one that fails
    (a savepoint per event costs two round trips each, and failures are rare)."""
    savepoint = uow.connection.begin_nested()
    try:
        for event in events:
            handle(uow, event, key)
    except ENVIRONMENT_ERRORS:
        savepoint.rollback()
        raise
    except Exception:
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def _attempt(
    uow: UnitOfWork, handle: Handler, event: Event, key: str | None, settings: Settings
) -> str | None:
    """Handle one event in a savepoint: None when it was handled, else the error (scrubbed),
    its effects rolled back."""
    savepoint = uow.connection.begin_nested()
    try:
        handle(uow, event, key)
    except ENVIRONMENT_ERRORS:
        savepoint.rollback()
        raise
    except Exception as exc:
        savepoint.rollback()
        return error_text(exc, settings)
    savepoint.commit()
    return None


def error_text(exc: BaseException, settings: Settings) -> str:
    """An error as a dead letter keeps it: its kind and message, scrubbed of secrets."""
    return settings.scrub(f"{type(exc).__name__}: {exc}")[:ERROR_CHARS]


def _retried(letter: DeadLetter, error: str | None, now: dt.datetime) -> DeadLetter:
    if error is None:
        return replace(letter, status=DeadLetterStatus.RETRIED, resolved_at=now)
    return replace(
        letter,
        status=DeadLetterStatus.DEAD,
        attempts=letter.attempts + 1,
        error=error,
        failed_at=now,
    )


# -- consumers whose effects another system commits ------------------------------------------


@dataclass(frozen=True)
class Committed:
    """What an orchestrator committed with its last tick: the consumer's position, the
    generation it read in, and the letters it handled on a retry."""

    position: int
    generation: int = 0
    retried: tuple[int, ...] = ()


def resume(
    uow: UnitOfWork, consumer: str, committed: Committed | None, now: dt.datetime
) -> ConsumerCursor:
    """Record in the store what the orchestrator's last committed tick handled, unless a
    replay moved the consumer since (a newer generation counts over it), and return the cursor
    to read from."""
    with uow:
        cursor = uow.cursors.get(consumer, for_update=True)
        if committed is not None and committed.generation == cursor.generation:
            if committed.position != cursor.position:
                cursor = cursor.moved_to(committed.position, now)
                uow.cursors.save(cursor)
            for letter_id in committed.retried:
                letter = uow.dead_letters.get(letter_id)
                if letter is not None and letter.status is DeadLetterStatus.RETRYING:
                    uow.dead_letters.save(_retried(letter, None, now))
        uow.commit()
    return cursor


def record_failure(
    uow: UnitOfWork, consumer: str, event: Event, exc: BaseException, settings: Settings
) -> bool:
    """An orchestrated consumer failed on `event` (the first it has not handled): count the
    attempt; True when it was the last, the event now a dead letter to move past."""
    now = clock.now()
    error = error_text(exc, settings)
    with uow:
        cursor = uow.cursors.get(consumer, for_update=True)
        failure = cursor.failed(event.id, error, settings.consumer_max_attempts, now)
        uow.cursors.save(failure.cursor)
        if failure.dead:
            uow.dead_letters.add(consumer, event, error, failure.attempts, now)
        uow.commit()
    return failure.dead


def retrying(uow: UnitOfWork, consumer: str) -> list[DeadLetter]:
    """The letters handed back to `consumer`, oldest first."""
    with uow:
        return uow.dead_letters.list(consumer, DeadLetterStatus.RETRYING, limit=RETRIES_PER_PASS)


def record_retry_failure(
    uow: UnitOfWork, letter: DeadLetter, exc: BaseException, settings: Settings
) -> None:
    """A retried letter failed again: it is dead again, with this error."""
    now = clock.now()
    with uow:
        uow.dead_letters.save(_retried(letter, error_text(exc, settings), now))
        uow.commit()
