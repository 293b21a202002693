"""Operator settings records: what the operator decides outside the catalog (who may bind a
source, the store's timeouts, profiling limits) and where a scheduled profiling pass stands."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mdstudio_core.domain.enums import Tier

if TYPE_CHECKING:
    from mdstudio_core.domain.payloads import Binding


# Schemas no binding may read, whatever the source allows: the warehouse's own catalogs.
# PostgreSQL reserves every schema name starting with `pg_` (pg_catalog, pg_toast, pg_temp_N).
SYSTEM_SCHEMA_PREFIXES = ("pg_",)
SYSTEM_SCHEMAS = frozenset({"information_schema"})
SYSTEM_TABLE_PREFIXES = ("sqlite_",)  # SQLite's own tables (sqlite_master, sqlite_sequence)


@dataclass(frozen=True)
class SourceAccess:
    """Who may bind a warehouse source, and where: the operator decides, outside the catalog
    (`MDSTUDIO_SOURCE_<NAME>_TENANTS`, `..._SCHEMAS`). Unset tenants: every tenant (a
    single-tenant deployment); unset schemas: any schema but the system's."""

    source: str
    tenants: frozenset[uuid.UUID] | None = None
    schemas: frozenset[str] | None = None

    def refusal(self, binding: Binding, tenant_id: uuid.UUID) -> tuple[str, str] | None:
        """Why `tenant_id` may not bind `binding` to this source, as (field, reason), or None."""
        variable = f"MDSTUDIO_SOURCE_{self.source.upper()}"
        if self.tenants is not None and tenant_id not in self.tenants:
            return (
                "payload.binding.source",
                f"source {self.source!r} is not open to this tenant ({variable}_TENANTS)",
            )
        schema = binding.schema_
        if schema is not None and (
            schema.lower() in SYSTEM_SCHEMAS or schema.lower().startswith(SYSTEM_SCHEMA_PREFIXES)
        ):
            return "payload.binding.schema", f"{schema} is a system schema; no binding reads it"
        if binding.table.lower().startswith(SYSTEM_TABLE_PREFIXES):
            return (
                "payload.binding.table",
                f"{binding.table} is a system table; no binding reads it",
            )
        if self.schemas is not None and schema not in self.schemas:
            allowed = ", ".join(sorted(self.schemas))
            return (
                "payload.binding.schema",
                f"source {self.source!r} allows the schemas {allowed} ({variable}_SCHEMAS); "
                "name one of them",
            )
        return None


# Where a scheduled pass's planning stands: the last table planned, as pages order tables
# (tenant id, source, schema or "", table).
TablePosition = tuple[str, str, str, str]


@dataclass(frozen=True)
class ProfilePass:
    """A scheduled profiling pass: one tier's schedule at one slot (`2026-11-26T02:00`), planned
    a page of tables at a time so no tick's work grows with the catalog."""

    id: int
    schedule: str
    tier: Tier
    slot: str
    requested_at: dt.datetime
    planned_through: TablePosition | None = None
    tables_planned: int = 0
    runs_requested: int = 0
    finished_at: dt.datetime | None = None


@dataclass(frozen=True)
class PassProgress:
    """How far the orchestrator's committed ticks planned a pass (its cursor)."""

    pass_id: int
    planned_through: TablePosition | None = None
    tables_planned: int = 0
    runs_requested: int = 0
    finished: bool = False


@dataclass(frozen=True)
class StoreTimeouts:
    """Bounds on the metadata store (PostgreSQL): how long one statement may run and how long it
    may wait for a lock. A stuck lock or a runaway query then fails its request, naming the
    bound, instead of hanging it and the connection it holds."""

    statement_s: float
    lock_s: float


@dataclass(frozen=True)
class ProfileLimits:
    """Limits for big tables, set per tier: a statement timeout (a clear failure when exceeded,
    never a partial profile) and optional sampling (PostgreSQL ``TABLESAMPLE SYSTEM``)."""

    timeout_s: float | None = 600.0
    sample_percent: float | None = None

    @classmethod
    def shared(cls, chosen: Iterable[ProfileLimits]) -> ProfileLimits:
        """The limits for a table shared by entities of several tiers: the shortest timeout,
        and sampling only when every tier samples (the smallest sample)."""
        limits = list(chosen) or [cls()]
        timeouts = [c.timeout_s for c in limits if c.timeout_s is not None]
        samples = [c.sample_percent for c in limits]
        return cls(
            timeout_s=min(timeouts) if timeouts else None,
            sample_percent=None
            if any(s is None for s in samples)
            else min(s for s in samples if s is not None),
        )

    def within(self, timeout_s: float) -> ProfileLimits:
        """These limits with a timeout of at most `timeout_s`."""
        timeout = timeout_s if self.timeout_s is None else min(self.timeout_s, timeout_s)
        return replace(self, timeout_s=timeout)
