"""The read model behind `/metrics`: grouped queries over the store at scrape time."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Column, Connection, and_, case, func, or_, select

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository, utc
from mdstudio_core.domain.events import PROFILE_OUTCOMES
from mdstudio_core.domain.incidents import IncidentStatus
from mdstudio_core.domain.model import ApprovalStatus, Tier


def profile_outcome_counts(
    connection: Connection, *, after: int, through: int | None
) -> list[tuple[uuid.UUID, str, str, int]]:
    """(tenant, tier, outcome, count) of the profile events with ids after `after` (through
    `through`), outcome `completed` or `failed`."""
    column = tables.events.c
    tier = column.payload["tier"].as_string()
    query = (
        select(column.tenant_id, tier, column.type, func.count())
        .where(column.type.in_(PROFILE_OUTCOMES), column.id > after)
        .group_by(column.tenant_id, tier, column.type)
    )
    if through is not None:
        query = query.where(column.id <= through)
    return [
        (tenant, tier, kind.rsplit(".", 1)[-1], count)
        for tenant, tier, kind, count in connection.execute(query)
    ]


class CatalogMetrics(Repository):
    """Aggregates `/metrics` reports, read from the store at scrape time so every replica
    reports the same truth. Each is one grouped query."""

    def latest_scores(self) -> list[tuple[uuid.UUID, str, str, float]]:
        """(tenant, canonical key, tier, score) of each tier1/tier2 field's latest profile."""
        entity, profile = tables.global_metadata.c, tables.profiles.c
        later = tables.profiles.alias("later").c
        newest = (
            select(func.max(later.created_at))
            .where(later.tenant_id == entity.tenant_id, later.canonical_key == entity.canonical_key)
            .correlate(tables.global_metadata)
            .scalar_subquery()
        )
        query = (
            select(entity.tenant_id, entity.canonical_key, entity.tier, profile.quality_score)
            .join(
                tables.profiles,
                and_(
                    profile.tenant_id == entity.tenant_id,
                    profile.canonical_key == entity.canonical_key,
                ),
            )
            .where(
                entity.tier.in_([Tier.TIER1.value, Tier.TIER2.value]),
                profile.created_at == newest,
                profile.quality_score.is_not(None),
            )
        )
        latest = {
            (tenant, key): (tier, score)
            for tenant, key, tier, score in self._connection.execute(query)
        }
        # Two profiles saved at the same instant would be two series with one name: one wins.
        return [(tenant, key, tier, score) for (tenant, key), (tier, score) in latest.items()]

    def open_incidents(self) -> list[tuple[uuid.UUID, str, int]]:
        return self._counts(tables.quality_incidents.c.tier, IncidentStatus.RESOLVED.value)

    def profile_outcomes(self) -> list[tuple[uuid.UUID, str, str, int]]:
        """(tenant, tier, outcome, count): every profile event the outbox holds, and those
        archived from it (so the count never goes down)."""
        counts: dict[tuple[uuid.UUID, str, str], int] = {}
        for tenant, tier, outcome, count in profile_outcome_counts(
            self._connection, after=0, through=None
        ):
            counts[(tenant, tier, outcome)] = counts.get((tenant, tier, outcome), 0) + count
        archived = self._connection.execute(select(tables.event_archives.c.profile_outcomes))
        for outcomes in archived.scalars():
            for tenant, tier, outcome, count in outcomes:
                found = (uuid.UUID(tenant), tier, outcome)
                counts[found] = counts.get(found, 0) + count
        return [(tenant, tier, outcome, count) for (tenant, tier, outcome), count in counts.items()]

    def profile_durations(
        self, buckets: Sequence[float]
    ) -> list[tuple[str, list[int], int, float]]:
        """Per tier: cumulative counts of profiles within each bucket (seconds), the count and
        the sum of durations: a histogram computed by the database."""
        profile, entity = tables.profiles.c, tables.global_metadata.c
        seconds = profile.duration_ms / 1000.0
        query = (
            select(
                entity.tier,
                *(func.sum(case((seconds <= bound, 1), else_=0)) for bound in buckets),
                func.count(),
                func.coalesce(func.sum(seconds), 0.0),
            )
            .join(
                tables.global_metadata,
                and_(
                    entity.tenant_id == profile.tenant_id,
                    entity.canonical_key == profile.canonical_key,
                ),
            )
            .where(profile.duration_ms.is_not(None))
            .group_by(entity.tier)
        )
        return [
            (row[0], [int(n or 0) for n in row[1 : 1 + len(buckets)]], row[-2], float(row[-1]))
            for row in self._connection.execute(query)
        ]

    def pending_approvals(self) -> list[tuple[uuid.UUID, str, str, int, dt.datetime]]:
        """(tenant, tier, lane, count, oldest requested_at) of pending requests."""
        column = tables.approvals.c
        query = (
            select(
                column.tenant_id,
                column.tier,
                column.lane,
                func.count(),
                func.min(column.requested_at),
            )
            .where(column.status == ApprovalStatus.PENDING.value)
            .group_by(column.tenant_id, column.tier, column.lane)
        )
        return [
            (tenant, tier, lane, count, utc(oldest))
            for tenant, tier, lane, count, oldest in self._connection.execute(query)
        ]

    def overdue_approvals(
        self, requested_before: dict[Tier, dt.datetime]
    ) -> list[tuple[uuid.UUID, str, int]]:
        """(tenant, tier, count) of pending requests past their deadline, for each tier with
        one (`requested_before`: a request of that tier requested earlier is overdue); a
        tenant with pending requests of such a tier but none overdue counts 0."""
        if not requested_before:
            return []
        column = tables.approvals.c
        late = or_(
            *(
                and_(column.tier == tier.value, column.requested_at <= before)
                for tier, before in requested_before.items()
            )
        )
        query = (
            select(column.tenant_id, column.tier, func.sum(case((late, 1), else_=0)))
            .where(
                column.status == ApprovalStatus.PENDING.value,
                column.tier.in_([tier.value for tier in requested_before]),
            )
            .group_by(column.tenant_id, column.tier)
        )
        return [
            (tenant, tier, int(count or 0))
            for tenant, tier, count in self._connection.execute(query)
        ]

    def decisions(self) -> list[tuple[uuid.UUID, str, int]]:
        return self._counts(tables.approvals.c.status, ApprovalStatus.PENDING.value)

    def decision_times(self) -> Iterator[tuple[str, dt.datetime, dt.datetime]]:
        """(tier, requested_at, decided_at) of decided requests, streamed."""
        column = tables.approvals.c
        query = select(column.tier, column.requested_at, column.decided_at).where(
            column.decided_at.is_not(None)
        )
        for tier, requested, decided in self._connection.execution_options(yield_per=5000).execute(
            query
        ):
            yield tier, utc(requested), utc(decided)

    def last_event_id(self) -> int:
        return self._connection.execute(select(func.max(tables.events.c.id))).scalar() or 0

    def deliveries(self) -> list[tuple[str, int]]:
        column = tables.notification_deliveries.c
        query = select(column.status, func.count()).group_by(column.status)
        return [tuple(row) for row in self._connection.execute(query)]

    def _counts(self, column: Column[Any], but_status: str) -> list[tuple[uuid.UUID, str, int]]:
        """(tenant, value of `column`, count) of the rows of its table whose status is not
        `but_status`."""
        row = column.table.c
        query = (
            select(row.tenant_id, column, func.count())
            .where(row.status != but_status)
            .group_by(row.tenant_id, column)
        )
        return [tuple(found) for found in self._connection.execute(query)]
