"""The outbox's consumers: where each stands, what a replay changes, when an event that keeps
failing is set aside. Nothing here touches a store.

A consumer's cursor is the last event id it has handled (`position`). A replay moves it back to
handle a range again as a deliberate new pass: what the consumer causes while replaying is keyed
by the replay (`key`), so it happens once per replay however often a crash makes it start over,
and a second replay of the same range causes it again. Past the range, the consumer returns to
where it was (`resume_after`). An event a consumer fails on `max_attempts` times in a row becomes
a dead letter and the consumer moves on."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from mdstudio_core.domain.errors import InvalidInput

# The Dagster sensors reading the outbox: always consumers, registered or not.
BUILTIN_CONSUMERS = ("approval_sensor", "notification_sensor")
CONSUMER_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
# A dead letter keeps this much of its error.
ERROR_CHARS = 2000


def check_consumer_name(name: str) -> str:
    if not CONSUMER_NAME.match(name or ""):
        raise InvalidInput(
            "must be 1 to 64 lower-case letters, digits, '_', '.' or '-', starting with a letter",
            field="name",
        )
    return name


@dataclass(frozen=True)
class ConsumerCursor:
    """`mdm_consumer_cursor`: a consumer's place in the outbox, the replay it is in (if any)
    and the event at its head that failed (`attempts` times, the last with `last_error`)."""

    consumer: str
    position: int = 0
    generation: int = 0
    replay_id: int | None = None
    replay_through: int | None = None
    resume_after: int | None = None
    attempts: int = 0
    failing_event_id: int | None = None
    last_error: str | None = None
    updated_at: dt.datetime | None = None

    @property
    def replaying(self) -> bool:
        return (
            self.replay_id is not None
            and self.replay_through is not None
            and self.position < self.replay_through
        )

    @property
    def key(self) -> str | None:
        """What the consumer's effects are keyed by while it replays: `replay:<id>`."""
        return f"replay:{self.replay_id}" if self.replaying else None

    @property
    def read_through(self) -> int | None:
        """The last event a page may hold: a replay's pages stop at its range's end, so no page
        mixes replayed events with new ones."""
        return self.replay_through if self.replaying else None

    def moved_to(self, position: int, at: dt.datetime) -> ConsumerCursor:
        """The cursor after handling everything through `position`. At the end of a replay's
        range the consumer goes back to where it was before the replay; passing the failing
        event forgets its attempts."""
        moved = replace(self, position=position, updated_at=at)
        if self.replay_through is not None and position >= self.replay_through:
            moved = replace(
                moved,
                position=max(position, self.resume_after or 0),
                replay_id=None,
                replay_through=None,
                resume_after=None,
            )
        if self.failing_event_id is not None and moved.position >= self.failing_event_id:
            moved = replace(moved, attempts=0, failing_event_id=None, last_error=None)
        return moved

    def failed(self, event_id: int, error: str, max_attempts: int, at: dt.datetime) -> Failure:
        """The consumer failed on `event_id` (the first event it has not handled): one more
        attempt in a row, and whether that was the last (`dead`: the event becomes a dead
        letter, and the consumer moves past it)."""
        attempts = self.attempts + 1 if self.failing_event_id == event_id else 1
        cursor = replace(
            self, attempts=attempts, failing_event_id=event_id, last_error=error, updated_at=at
        )
        return Failure(cursor=cursor, attempts=attempts, dead=attempts >= max_attempts)

    def replayed(
        self, replay_id: int, first: int, last: int | None, at: dt.datetime
    ) -> ConsumerCursor:
        """The cursor of a replay of events `first` to `last` (to where the consumer got, when
        `last` is None): it handles them again, then goes on from where it was."""
        reached = max(self.position, self.resume_after or 0)
        if first < 1:
            raise InvalidInput("must be an event id (1 or more)", field="from")
        if first > reached + 1:
            raise InvalidInput(
                f"{self.consumer} has not handled events up to {first - 1} yet (it is at "
                f"{reached}): there is nothing to replay from {first}",
                field="from",
            )
        through = reached if last is None else last
        if through < first:
            raise InvalidInput(
                f"the range {first} to {through} is empty: nothing to replay",
                field="to" if last is not None else "from",
            )
        return replace(
            self,
            position=first - 1,
            generation=self.generation + 1,
            replay_id=replay_id,
            replay_through=through,
            resume_after=max(reached, through),
            attempts=0,
            failing_event_id=None,
            last_error=None,
            updated_at=at,
        )


@dataclass(frozen=True)
class Failure:
    cursor: ConsumerCursor
    attempts: int
    dead: bool


class DeadLetterStatus(StrEnum):
    DEAD = "dead"  # set aside: the consumer moved past it
    RETRYING = "retrying"  # handed back (`retry ID`): the consumer handles it at its next pass
    RETRIED = "retried"  # handled on a retry
    DISCARDED = "discarded"  # dropped on the record (`discard ID --reason`)


@dataclass(frozen=True)
class DeadLetter:
    """An event a consumer could not handle, with the event itself (it outlives the outbox's
    retention) and the error, scrubbed of secrets."""

    id: int
    consumer: str
    event_id: int
    event: dict[str, Any]
    error: str
    attempts: int
    status: DeadLetterStatus
    failed_at: dt.datetime
    resolved_at: dt.datetime | None = None
    resolved_by: str | None = None
    reason: str | None = None

    @property
    def key(self) -> str:
        """What a retry's effects are keyed by: once per retry of this letter."""
        return f"retry:{self.id}:{self.attempts}"


@dataclass(frozen=True)
class ConsumerStatus:
    """What `mdstudio events consumers` lists."""

    name: str
    position: int
    lag_events: int
    lag_seconds: float
    dead_letters: int
    replaying: dict[str, int] | None = None
    failing: dict[str, Any] | None = None
