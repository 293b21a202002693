"""Retention of the outbox: archive old events to Parquet and remove them, never past any
consumer's place; tell a reader below the horizon so; read an archive back into a scratch
database.

An archive writes its files first (each flushed and renamed into place), then records the run
(`mdm_event_archive`: the horizon moves, so readers below it are told at once), then removes
the events in batches of `BATCH` ids, each its own short transaction. A run that dies part way
is finished by the next one: rows left at or below the horizon are removed first, and files
written but not recorded are rewritten without repeating an event."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.archive import ArchiveWriter, read_archive
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.domain.consumers import BUILTIN_CONSUMERS
from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.retention import ArchiveRecord, archive_scope
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

# Ids removed per transaction, and events read per page while writing the files.
BATCH = 10_000


@dataclass(frozen=True)
class ArchiveReport:
    events: int
    first_event_id: int | None
    last_event_id: int | None
    files: list[str]
    removed: int
    held_back_by: str | None = None
    held_back_at: int | None = None
    horizon: int = 0


def archive(
    uow_factory: Callable[[], UnitOfWork],
    before: dt.datetime,
    directory: Path,
    actor: str,
    now: dt.datetime,
) -> ArchiveReport:
    """Move the events that happened before `before`, up to the place of the consumer
    furthest behind, to `directory` (one Parquet file per month), then out of the outbox."""
    removed = _remove_archived(uow_factory)
    with uow_factory() as uow:
        horizon = uow.archives.horizon()
        positions = {name: 0 for name in BUILTIN_CONSUMERS}
        positions |= {cursor.consumer: cursor.position for cursor in uow.cursors.all()}
        scope = archive_scope(horizon, uow.events.last_before(horizon, before), positions)
    held = scope.held_back_by
    report = ArchiveReport(
        events=0,
        first_event_id=None,
        last_event_id=None,
        files=[],
        removed=removed,
        held_back_by=held[0] if held else None,
        held_back_at=held[1] if held else None,
        horizon=horizon,
    )
    if scope.through <= horizon:
        return report
    writer = ArchiveWriter(directory)
    count = 0
    first = last = None
    try:
        after = horizon
        while after < scope.through:
            with uow_factory() as uow:
                page = uow.events.list(after=after, limit=BATCH, through=scope.through)
            if not page:
                break
            writer.write(page)
            count += len(page)
            first = first if first is not None else page[0].id
            last = page[-1].id
            after = last
        files = writer.close()
    except BaseException:
        writer.abandon()
        raise
    with uow_factory() as uow:
        outcomes = uow.events.profile_outcomes(horizon, scope.through)
        uow.archives.add(
            ArchiveRecord(
                first_event_id=horizon + 1,
                last_event_id=scope.through,
                events=count,
                before=before,
                directory=str(directory),
                files=tuple(path.name for path in files),
                archived_at=now,
                archived_by=actor,
                profile_outcomes=tuple(
                    (str(tenant), tier, outcome, count) for tenant, tier, outcome, count in outcomes
                ),
            )
        )
        uow.commit()
    removed += _remove_archived(uow_factory)
    return ArchiveReport(
        events=count,
        first_event_id=first,
        last_event_id=last,
        files=[str(path) for path in files],
        removed=removed,
        held_back_by=report.held_back_by,
        held_back_at=report.held_back_at,
        horizon=scope.through,
    )


def _remove_archived(uow_factory: Callable[[], UnitOfWork]) -> int:
    """Remove the events at or below the horizon still in the outbox, `BATCH` ids per
    transaction."""
    with uow_factory() as uow:
        horizon = uow.archives.horizon()
        lowest = uow.events.lowest()
    removed = 0
    if lowest is None or lowest > horizon:
        return removed
    start = lowest - 1
    while start < horizon:
        end = min(start + BATCH, horizon)
        with uow_factory() as uow:
            removed += uow.events.remove(start, end)
            uow.commit()
        start = end
    return removed


@dataclass(frozen=True)
class ImportReport:
    target: str
    events: int
    first_event_id: int | None
    last_event_id: int | None


def import_archive(directory: Path, target: str, live_store_url: str) -> ImportReport:
    """Load the archive under `directory` into the scratch database `target` (a SQLAlchemy
    URL, or a path for a SQLite file): an `mdm_event` table there, each event once however
    often it is imported. Never the live store, nor any mdstudio store."""
    url = target if "://" in target else f"sqlite:///{Path(target).expanduser().resolve()}"
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise InvalidInput("is not a file path nor a database URL", field="into") from exc
    if _same_database(parsed, make_url(live_store_url)):
        raise InvalidInput(
            "is the live store (MDSTUDIO_DATABASE_URL): import into a scratch database",
            field="into",
        )
    engine = create_store_engine(url)
    try:
        if sa.inspect(engine).has_table("alembic_version"):
            raise InvalidInput(
                "holds an mdstudio store (it has alembic_version): import into a scratch database",
                field="into",
            )
        tables.events.create(engine, checkfirst=True)
        count = 0
        first = last = None
        for page in read_archive(directory):
            with UnitOfWork(engine) as uow:
                count += uow.events.restore(page)
                uow.commit()
            first = page[0].id if first is None else min(first, page[0].id)
            last = page[-1].id if last is None else max(last, page[-1].id)
    finally:
        engine.dispose()
    return ImportReport(
        target=parsed.render_as_string(hide_password=True),
        events=count,
        first_event_id=first,
        last_event_id=last,
    )


def _same_database(one: sa.URL, other: sa.URL) -> bool:
    if one.get_backend_name() != other.get_backend_name():
        return False
    if one.get_backend_name() == "sqlite":
        return Path(one.database or "").resolve() == Path(other.database or "").resolve()
    return (one.host, one.port or 5432, one.database) == (
        other.host,
        other.port or 5432,
        other.database,
    )
