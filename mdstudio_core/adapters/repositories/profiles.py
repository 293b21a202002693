"""Profiles and what incremental profiling keeps between runs: each table's state, its days, and
the passes a tier's schedule plans."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository, keys_by_tenant
from mdstudio_core.domain.incremental import DaysRead, ProfileDay, TableState
from mdstudio_core.domain.model import PassProgress, ProfilePass, Tier
from mdstudio_core.domain.quality import StoredProfile


class ProfileRepository(Repository):
    """`mdm_profile`: one row per profiled entity per run."""

    def add(self, profile: StoredProfile) -> bool:
        """Insert a profile; False when this run already saved this entity (a retried run must
        not count twice). The profile's `id` is derived from (run, entity) by the caller."""
        column = tables.profiles.c
        if profile.run_id is not None:
            exists = self._connection.execute(
                select(column.id).where(
                    column.run_id == profile.run_id, column.entity_urn == profile.entity_urn
                )
            ).first()
            if exists:
                return False
        self._connection.execute(insert(tables.profiles).values(dataclasses.asdict(profile)))
        return True

    def saved_in_run(self, run_id: str, entity_urns: Sequence[str]) -> set[str]:
        """Which of the entities this run has saved already (a retried step skips them)."""
        column = tables.profiles.c
        rows = self._connection.execute(
            select(column.entity_urn).where(
                column.run_id == run_id, column.entity_urn.in_(entity_urns)
            )
        )
        return set(rows.scalars())

    def history(
        self, tenant_id: uuid.UUID, canonical_key: str, limit: int = 20
    ) -> list[StoredProfile]:
        """The entity's profiles, newest first."""
        column = tables.profiles.c
        query = (
            select(tables.profiles)
            .where(column.tenant_id == tenant_id, column.canonical_key == canonical_key)
            .order_by(column.created_at.desc(), column.id)
            .limit(limit)
        )
        return [StoredProfile(**row._asdict()) for row in self._connection.execute(query)]

    def last_profiled_at(
        self, entities: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], dt.datetime]:
        """When each (tenant, canonical key) was last profiled; absent keys never were."""
        column = tables.profiles.c
        return _per_key(self._connection, tables.profiles, func.max(column.created_at), entities)


class ProfileStateRepository(Repository):
    """`mdm_profile_state`: what an incremental profile keeps of each table, per tenant."""

    @staticmethod
    def _where(tenant_id: uuid.UUID, source: str, schema: str | None, table: str) -> Any:
        column = tables.profile_states.c
        return and_(
            column.tenant_id == tenant_id,
            column.source == source,
            column.schema_name == (schema or ""),
            column.table_name == table,
        )

    def get(
        self, tenant_id: uuid.UUID, source: str, schema: str | None, table: str
    ) -> tuple[TableState, int] | None:
        """The table's state and its version (for `put`), or None before its first pass."""
        column = tables.profile_states.c
        row = self._connection.execute(
            select(column.state, column.version).where(
                self._where(tenant_id, source, schema, table)
            )
        ).first()
        return None if row is None else (TableState.from_json(row.state), row.version)

    def put(
        self,
        tenant_id: uuid.UUID,
        source: str,
        schema: str | None,
        table: str,
        state: TableState,
        read_version: int | None,
        at: dt.datetime,
    ) -> bool:
        """Keep `state` if the table's state is still the one read (`read_version`, None: there
        was none); False when another pass kept one since (that one stays: both describe the
        table exactly, each at its own moment)."""
        column = tables.profile_states.c
        if read_version is None:
            dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
            values = {
                "tenant_id": tenant_id,
                "source": source,
                "schema_name": schema or "",
                "table_name": table,
                "state": state.to_json(),
                "version": 1,
                "updated_at": at,
            }
            inserted = self._connection.execute(
                dialect.insert(tables.profile_states)
                .values(values)
                .on_conflict_do_nothing()
                .returning(column.version)
            )
            return inserted.first() is not None
        updated = self._connection.execute(
            update(tables.profile_states)
            .where(self._where(tenant_id, source, schema, table), column.version == read_version)
            .values(state=state.to_json(), version=read_version + 1, updated_at=at)
        )
        return updated.rowcount == 1


class ProfileDayRepository(Repository):
    """`mdm_profile_day`: each day's counts and score of a field bound with
    `incremental.partition: day`."""

    def write(
        self,
        tenant_id: uuid.UUID,
        canonical_key: str,
        days: Sequence[ProfileDay],
        *,
        read: DaysRead,
    ) -> None:
        """Replace the days the pass `read` with the days it found: a day it read and found
        no row for holds none now, so its stored counts are dropped too."""
        column = tables.profile_days.c
        mine = and_(column.tenant_id == tenant_id, column.canonical_key == canonical_key)
        stale = delete(tables.profile_days).where(mine)
        if read.since is not None:
            stale = stale.where(
                or_(column.day >= read.since, column.day.in_(sorted(read.recounted)))
            )
        self._connection.execute(stale)
        if days:
            self._connection.execute(
                insert(tables.profile_days),
                [
                    {
                        "tenant_id": tenant_id,
                        "canonical_key": canonical_key,
                        "day": day.day,
                        "row_count": day.row_count,
                        "quality_score": day.quality_score,
                        "columns": day.columns,
                        "profile_id": day.profile_id,
                        "updated_at": day.updated_at,
                    }
                    for day in days
                ],
            )

    def first_days(
        self, entities: Sequence[tuple[uuid.UUID, str]]
    ) -> dict[tuple[uuid.UUID, str], dt.date]:
        """The first day recorded of each (tenant, canonical key) that has one: where its
        table's daily asset starts."""
        column = tables.profile_days.c
        return _per_key(self._connection, tables.profile_days, func.min(column.day), entities)

    def list(
        self,
        tenant_id: uuid.UUID,
        canonical_key: str,
        first: dt.date | None = None,
        last: dt.date | None = None,
    ) -> list[ProfileDay]:
        """The field's days from `first` to `last` (both included), oldest first."""
        column = tables.profile_days.c
        query = select(tables.profile_days).where(
            column.tenant_id == tenant_id, column.canonical_key == canonical_key
        )
        if first is not None:
            query = query.where(column.day >= first)
        if last is not None:
            query = query.where(column.day <= last)
        return [
            ProfileDay(
                day=row.day,
                row_count=row.row_count,
                quality_score=row.quality_score,
                columns=row.columns,
                profile_id=row.profile_id,
                updated_at=row.updated_at,
            )
            for row in self._connection.execute(query.order_by(column.day))
        ]


def _per_key(
    connection: Connection,
    table: Table,
    aggregate: ColumnElement[Any],
    entities: Sequence[tuple[uuid.UUID, str]],
) -> dict[tuple[uuid.UUID, str], Any]:
    """`aggregate` over the rows of `table` of each (tenant, canonical key), in bounded batches;
    keys without rows are absent."""
    found: dict[tuple[uuid.UUID, str], Any] = {}
    for tenant_id, keys in keys_by_tenant(entities):
        rows = connection.execute(
            select(table.c.canonical_key, aggregate)
            .where(table.c.tenant_id == tenant_id, table.c.canonical_key.in_(keys))
            .group_by(table.c.canonical_key)
        )
        found.update({(tenant_id, key): value for key, value in rows})
    return found


class ProfilePassRepository(Repository):
    """`mdm_profile_pass`: scheduled profiling passes and how far their planning got."""

    def add(self, schedule: str, tier: Tier, slot: str, at: dt.datetime) -> ProfilePass:
        """The pass of `schedule` at `slot`, recorded once however often its tick is
        evaluated."""
        values = {"schedule": schedule, "tier": tier.value, "slot": slot, "requested_at": at}
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        self._connection.execute(
            dialect.insert(tables.profile_passes).values(values).on_conflict_do_nothing()
        )
        column = tables.profile_passes.c
        row = self._connection.execute(
            select(tables.profile_passes).where(column.schedule == schedule, column.slot == slot)
        ).one()
        return _profile_pass(row)

    def get(self, pass_id: int) -> ProfilePass | None:
        row = self._connection.execute(
            select(tables.profile_passes).where(tables.profile_passes.c.id == pass_id)
        ).first()
        return _profile_pass(row) if row else None

    def next_open(self, after_id: int) -> ProfilePass | None:
        """The oldest pass after `after_id` not finished yet."""
        column = tables.profile_passes.c
        row = self._connection.execute(
            select(tables.profile_passes)
            .where(column.id > after_id, column.finished_at.is_(None))
            .order_by(column.id)
            .limit(1)
        ).first()
        return _profile_pass(row) if row else None

    def record(self, progress: PassProgress, at: dt.datetime) -> None:
        """How far the pass's planning got; a finished pass keeps its first `finished_at`."""
        column = tables.profile_passes.c
        self._connection.execute(
            update(tables.profile_passes)
            .where(column.id == progress.pass_id)
            .values(
                planned_through=list(progress.planned_through)
                if progress.planned_through
                else None,
                tables_planned=progress.tables_planned,
                runs_requested=progress.runs_requested,
                finished_at=func.coalesce(column.finished_at, at) if progress.finished else None,
            )
        )


def _profile_pass(row: Row[Any]) -> ProfilePass:
    return ProfilePass(
        id=row.id,
        schedule=row.schedule,
        tier=Tier(row.tier),
        slot=row.slot,
        requested_at=row.requested_at,
        planned_through=tuple(row.planned_through) if row.planned_through else None,  # type: ignore[arg-type]
        tables_planned=row.tables_planned,
        runs_requested=row.runs_requested,
        finished_at=row.finished_at,
    )
