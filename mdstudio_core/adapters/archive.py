"""The outbox's archive: Parquet files, one per month of `occurred_at` (UTC), in a directory.

`events-YYYY-MM.parquet` holds one row per event, ordered by id, with the columns of `SCHEMA`:

    id              int64                 the event id (unique across the files)
    type            string                e.g. metadata.approved
    tenant_id       string                UUID
    entity_type     string                GLOBAL_METADATA, KPI, ... (CONSUMER for events.replayed)
    entity_key      string
    correlation_id  string                UUID
    actor           string
    occurred_at     timestamp[us, UTC]
    payload         string                the payload, JSON

A month archived in several runs is rewritten with the new rows after the old ones; a file is
written beside its final name, flushed to disk and renamed over it, so a file is whole or the
previous one. An event already in a month's file is not written twice (a run that died after
writing its files and before recording them is done again)."""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from mdstudio_core.domain.events import Event, entity_kind

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("tenant_id", pa.string(), nullable=False),
        pa.field("entity_type", pa.string(), nullable=False),
        pa.field("entity_key", pa.string(), nullable=False),
        pa.field("correlation_id", pa.string(), nullable=False),
        pa.field("actor", pa.string(), nullable=False),
        pa.field("occurred_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
    ]
)
FILE_NAME = re.compile(r"^events-(\d{4})-(\d{2})\.parquet$")


def month_of(event: Event) -> str:
    return event.occurred_at.astimezone(dt.UTC).strftime("%Y-%m")


def file_name(month: str) -> str:
    return f"events-{month}.parquet"


def _row(event: Event) -> dict[str, object]:
    return {
        "id": event.id,
        "type": event.type,
        "tenant_id": str(event.tenant_id),
        "entity_type": event.entity_type.value,
        "entity_key": event.entity_key,
        "correlation_id": str(event.correlation_id),
        "actor": event.actor,
        "occurred_at": event.occurred_at,
        "payload": orjson.dumps(event.payload).decode(),
    }


class MonthFile:
    """One month's file being written: the rows already archived there first, then new ones."""

    def __init__(self, directory: Path, month: str) -> None:
        self.path = directory / file_name(month)
        self._partial = directory / f".{file_name(month)}.{os.getpid()}.partial"
        self._writer = pq.ParquetWriter(self._partial, SCHEMA, compression="zstd")
        self.known: set[int] = set()
        self.written = 0
        if self.path.exists():
            earlier = pq.ParquetFile(self.path)
            for batch in earlier.iter_batches():
                self._writer.write_batch(batch)
                self.known.update(batch.column("id").to_pylist())

    def write(self, events: Sequence[Event]) -> None:
        rows = [_row(event) for event in events if event.id not in self.known]
        if rows:
            self._writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
            self.written += len(rows)

    def close(self) -> None:
        """Flush to disk and put the file in place of the month's previous one."""
        self._writer.close()
        with open(self._partial, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(self._partial, self.path)

    def abandon(self) -> None:
        self._writer.close()
        self._partial.unlink(missing_ok=True)


class ArchiveWriter:
    """Events, in id order, into their months' files under `directory`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._months: dict[str, MonthFile] = {}

    def write(self, events: Iterable[Event]) -> None:
        by_month: dict[str, list[Event]] = {}
        for event in events:
            by_month.setdefault(month_of(event), []).append(event)
        for month, rows in by_month.items():
            if month not in self._months:
                self._months[month] = MonthFile(self.directory, month)
            self._months[month].write(rows)

    def close(self) -> list[Path]:
        """Every month's file in place; the files written."""
        for month in self._months.values():
            month.close()
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)  # the renames themselves survive a crash
        finally:
            os.close(fd)
        return sorted(month.path for month in self._months.values())

    def abandon(self) -> None:
        for month in self._months.values():
            month.abandon()


def archived_files(directory: Path) -> list[Path]:
    """The archive's month files, oldest month first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if FILE_NAME.match(p.name))


def read_archive(directory: Path, batch: int = 10_000) -> Iterator[list[Event]]:
    """The events of every month file under `directory`, a batch at a time."""
    for path in archived_files(directory):
        parquet = pq.ParquetFile(path)
        if parquet.schema_arrow.remove_metadata() != SCHEMA.remove_metadata():
            raise ValueError(f"{path.name} is not an mdstudio events archive (its schema differs)")
        for records in parquet.iter_batches(batch_size=batch):
            yield [
                Event(
                    id=row["id"],
                    type=row["type"],
                    tenant_id=uuid.UUID(row["tenant_id"]),
                    entity_type=entity_kind(row["entity_type"]),
                    entity_key=row["entity_key"],
                    correlation_id=uuid.UUID(row["correlation_id"]),
                    actor=row["actor"],
                    occurred_at=row["occurred_at"],
                    payload=orjson.loads(row["payload"]),
                )
                for row in records.to_pylist()
            ]
