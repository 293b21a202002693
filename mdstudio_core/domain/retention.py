"""The outbox's retention: how far an archive may go, and what a reader below it is told.

Events leave `mdm_event` as a prefix of ids: everything up to the horizon (the last id
archived) is in the archive's files, everything after it is kept. An archive takes the events
that happened before its date, but never one a consumer has not handled: the consumer furthest
behind holds it back, and is named."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mdstudio_core.domain.errors import Gone


@dataclass(frozen=True)
class ArchiveRecord:
    """One archive run: the events it moved to `files` under `directory`."""

    first_event_id: int
    last_event_id: int
    events: int
    before: dt.datetime
    directory: str
    files: tuple[str, ...]
    archived_at: dt.datetime
    archived_by: str
    # The profile outcomes among the archived events, (tenant id, tier, outcome, count): the
    # profiles counter of /metrics adds them, so archiving never makes it go down.
    profile_outcomes: tuple[tuple[str, str, str, int], ...] = ()


@dataclass(frozen=True)
class ArchiveScope:
    """What an archive may take: ids after `horizon` through `through`."""

    horizon: int
    through: int
    held_back_by: tuple[str, int] | None = None  # the consumer (and its position) that limits


def archive_scope(horizon: int, last_before_date: int, positions: dict[str, int]) -> ArchiveScope:
    """Everything after the horizon that happened before the date, up to the position of the
    consumer furthest behind (named when it is what stops the archive)."""
    behind = min(positions.items(), key=lambda item: (item[1], item[0]))
    through = max(min(last_before_date, behind[1]), horizon)
    held = behind if behind[1] < last_before_date else None
    return ArchiveScope(horizon=horizon, through=through, held_back_by=held)


def check_resume(after: int, horizon: int) -> None:
    """A reader resuming after `after` has missed events when some after it were archived."""
    if after < horizon:
        raise Gone(
            f"events after {after} were archived: the outbox keeps events from "
            f"{horizon + 1} on (resume after {horizon}; the archive holds the others)",
            earliest_id=horizon + 1,
        )
