"""The metadata every table belongs to, and the column types and columns the tables share."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite would hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC) if value is not None else None

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
# BIGINT identity on PostgreSQL; INTEGER PRIMARY KEY AUTOINCREMENT on SQLite (never reused).
EventId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()


def entity_columns() -> list[Column[Any]]:
    """Columns every catalog entity shares: identity, tenant, lifecycle and optimistic version."""
    return [
        Column("id", Uuid, primary_key=True),
        Column("tenant_id", Uuid, nullable=False),
        Column("canonical_key", String(200), nullable=False),
        Column("tier", String(16), nullable=False),
        Column("owner", String(200)),
        Column("status", String(16), nullable=False, server_default="active"),
        Column("version", Integer, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
        Column("updated_by", String(200), nullable=False),
    ]
