"""What the repositories share: the connection they work on, batch inserts, batched key lookups,
UTC datetimes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Table, insert, text


class Repository:
    """A repository works on the connection of one unit of work, so whatever it does commits or
    rolls back with the rest of it."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection


# Batches of more rows or events than this go to PostgreSQL as one JSON array (`insert_rows`,
# `EventOutbox._append_unnested`); smaller ones as before.
UNNEST_FROM = 20


def insert_rows(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows (each with the same columns). On PostgreSQL a large batch goes as one
    JSON array read by `jsonb_populate_recordset`, for the reason
    `EventOutbox._append_unnested` gives; elsewhere, and for a few rows, as the driver's
    executemany."""
    if not rows:
        return
    if connection.dialect.name != "postgresql" or len(rows) <= UNNEST_FROM:
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


def keys_by_tenant(
    entities: Sequence[tuple[uuid.UUID, str]], chunk: int = 500
) -> Iterator[tuple[uuid.UUID, list[str]]]:
    """(tenant, up to `chunk` keys) groups: one bounded `IN` query each for a batch lookup."""
    by_tenant: dict[uuid.UUID, list[str]] = {}
    for tenant_id, key in entities:
        by_tenant.setdefault(tenant_id, []).append(key)
    for tenant_id, keys in by_tenant.items():
        for start in range(0, len(keys), chunk):
            yield tenant_id, keys[start : start + chunk]


def utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
