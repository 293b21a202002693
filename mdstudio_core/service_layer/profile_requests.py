"""Which entities get profiled, and when: the cost guards between "a profile is due" and a scan.

A profile becomes due when an approval changes a binding (`metadata.profile.due`), when a steward
asks for one (`metadata.profile.requested`, from `mdstudio profiles run`), or when a tier's
schedule comes round. Before any warehouse is touched, each candidate passes the guards:

* `NO_BINDING`: the live entity has no binding (or is gone or deprecated): nothing to scan;
* `COST_GUARD`: it was profiled, or a profile was requested, within the minimum rerun interval
  (`MDSTUDIO_MIN_RERUN_HOURS`, default 12); a manual request with `force` passes.

The rest are grouped by table so that each table is scanned once per batch, however many
entities are bound to it. Orchestration (Dagster) calls these functions; it decides nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine

from mdstudio_core.domain.errors import InvalidInput, NotFound
from mdstudio_core.domain.events import Event, NewEvent, validate_event
from mdstudio_core.domain.model import (
    Binding,
    EntityStatus,
    EntityType,
    Identity,
    Tier,
    entity_urn,
)
from mdstudio_core.domain.quality import ProfileResult
from mdstudio_core.service_layer.profiling import table_key
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

DEFAULT_MIN_RERUN_HOURS = 12.0  # the original design's 0.5 days
PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}
PROFILE_EVENTS = ("metadata.profile.due", "metadata.profile.requested")


class SkipReason(StrEnum):
    COST_GUARD = "COST_GUARD"
    NO_BINDING = "NO_BINDING"


def min_rerun_interval() -> dt.timedelta:
    """`MDSTUDIO_MIN_RERUN_HOURS` (default 12): how soon an entity may be profiled again."""
    raw = os.environ.get("MDSTUDIO_MIN_RERUN_HOURS", "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_MIN_RERUN_HOURS
    except ValueError as exc:
        raise InvalidInput("must be a number of hours", field="MDSTUDIO_MIN_RERUN_HOURS") from exc
    if hours < 0:
        raise InvalidInput("must not be negative", field="MDSTUDIO_MIN_RERUN_HOURS")
    return dt.timedelta(hours=hours)


@dataclass(frozen=True)
class ProfileCandidate:
    """An entity someone or something wants profiled, and why."""

    tenant_id: uuid.UUID
    canonical_key: str
    trigger: str  # approval | schedule | manual (as recorded on the profile)
    reason: str  # STRUCTURAL | SCHEDULED | MANUAL
    priority: str = "normal"
    approval_id: uuid.UUID | None = None
    event_ids: tuple[int, ...] = ()
    force: bool = False

    @property
    def entity(self) -> tuple[uuid.UUID, str]:
        return (self.tenant_id, self.canonical_key)


@dataclass(frozen=True)
class Skip:
    candidate: ProfileCandidate
    reason: SkipReason
    detail: str


@dataclass(frozen=True)
class PlannedEntity:
    candidate: ProfileCandidate
    tier: Tier


@dataclass(frozen=True)
class TableBatch:
    """Entities of one tenant bound to one table: one warehouse scan."""

    tenant_id: uuid.UUID
    source: str
    schema: str | None
    table: str
    entities: tuple[PlannedEntity, ...]

    @property
    def table_name(self) -> str:
        return (
            f"{self.source}.{self.schema}.{self.table}"
            if self.schema
            else (f"{self.source}.{self.table}")
        )

    @property
    def tier(self) -> Tier:
        """The most governed tier in the batch (tier1 before tier2 before tier3)."""
        return min(entity.tier for entity in self.entities)

    @property
    def priority(self) -> str:
        return min((e.candidate.priority for e in self.entities), key=PRIORITY_RANK.__getitem__)

    @property
    def keys(self) -> list[str]:
        return [entity.candidate.canonical_key for entity in self.entities]


@dataclass
class ProfilePlan:
    batches: list[TableBatch] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def candidates_from_events(events: Iterable[Event]) -> list[ProfileCandidate]:
    """One candidate per entity from the profile events of a page of the outbox (several
    events for one entity in a page collapse into one, forced if any was forced)."""
    merged: dict[tuple[uuid.UUID, str], ProfileCandidate] = {}
    for event in events:
        if event.type not in PROFILE_EVENTS:
            continue
        payload = event.payload
        manual = event.type == "metadata.profile.requested"
        candidate = ProfileCandidate(
            tenant_id=event.tenant_id,
            canonical_key=event.entity_key,
            trigger="manual" if manual else "approval",
            reason="MANUAL" if manual else payload["reason"],
            priority="high" if manual else payload["priority"],
            approval_id=None if manual else uuid.UUID(payload["approval_id"]),
            event_ids=(event.id,),
            force=bool(payload.get("force", False)),
        )
        previous = merged.get(candidate.entity)
        if previous is not None:
            candidate = dataclasses.replace(
                candidate,
                event_ids=previous.event_ids + candidate.event_ids,
                force=previous.force or candidate.force,
                priority=min(previous.priority, candidate.priority, key=PRIORITY_RANK.__getitem__),
            )
        merged[candidate.entity] = candidate
    return list(merged.values())


def plan(
    engine: Engine,
    candidates: Sequence[ProfileCandidate],
    *,
    now: dt.datetime,
    min_rerun: dt.timedelta,
    recently_requested: Mapping[tuple[uuid.UUID, str], dt.datetime] | None = None,
) -> ProfilePlan:
    """Apply the guards and group what remains by table.

    `recently_requested` holds when the orchestrator last asked for a profile of an entity
    whose result may not be saved yet, so a second request inside the interval is a
    COST_GUARD skip even while the first run is still going.
    """
    entities = [candidate.entity for candidate in candidates]
    with UnitOfWork(engine) as uow:
        live = uow.entities.get_many(EntityType.GLOBAL_METADATA, entities)
        profiled = uow.profiles.last_profiled_at(entities)
    recently_requested = recently_requested or {}
    result = ProfilePlan()
    groups: dict[tuple[uuid.UUID, str, str | None, str], list[PlannedEntity]] = {}
    for candidate in candidates:
        entity = live.get(candidate.entity)
        if entity is None or not entity.get("binding"):
            result.skipped.append(
                Skip(
                    candidate, SkipReason.NO_BINDING, "the entity is not bound to a warehouse table"
                )
            )
            continue
        if entity["status"] == EntityStatus.DEPRECATED.value:
            result.skipped.append(
                Skip(candidate, SkipReason.NO_BINDING, "the entity is deprecated")
            )
            continue
        last = max(
            (
                at
                for at in (profiled.get(candidate.entity), recently_requested.get(candidate.entity))
                if at is not None
            ),
            default=None,
        )
        if last is not None and now - last < min_rerun and not candidate.force:
            result.skipped.append(
                Skip(
                    candidate,
                    SkipReason.COST_GUARD,
                    f"profiled or requested at {last.isoformat()}, within the minimum rerun "
                    f"interval of {min_rerun.total_seconds() / 3600:g} h",
                )
            )
            continue
        key = (candidate.tenant_id, *table_key(Binding.model_validate(entity["binding"])))
        groups.setdefault(key, []).append(PlannedEntity(candidate, Tier(entity["tier"])))
    result.batches = [
        TableBatch(tenant_id, source, schema, table, tuple(planned))
        for (tenant_id, source, schema, table), planned in sorted(
            groups.items(), key=lambda item: (str(item[0][0]), *map(str, item[0][1:]))
        )
    ]
    return result


def scheduled_candidates(engine: Engine, tier: Tier) -> list[ProfileCandidate]:
    """Every active bound entity of `tier`, in every tenant: a scheduled pass."""
    with UnitOfWork(engine) as uow:
        entities = uow.entities.bound(tier)
    return [
        ProfileCandidate(
            tenant_id=uuid.UUID(entity["tenant_id"]),
            canonical_key=entity["canonical_key"],
            trigger="schedule",
            reason="SCHEDULED",
            priority="normal" if tier is Tier.TIER1 else "low",
        )
        for entity in entities
    ]


def request_profile(
    engine: Engine, identity: Identity, canonical_key: str, *, force: bool = False
) -> Event:
    """Ask for a manual profile of a bound entity: an outbox event the orchestrator picks up
    like any other, so the request is recorded and never lost. `force` passes the interval."""
    with UnitOfWork(engine) as uow:
        entity = uow.entities.get(EntityType.GLOBAL_METADATA, identity.tenant_id, canonical_key)
        if entity is None:
            raise NotFound(f"GLOBAL_METADATA {canonical_key} not found")
        new_event = NewEvent(
            type="metadata.profile.requested",
            tenant_id=identity.tenant_id,
            entity_type=EntityType.GLOBAL_METADATA,
            entity_key=canonical_key,
            correlation_id=uuid.uuid4(),
            actor=identity.user,
            occurred_at=dt.datetime.now(dt.UTC),
            payload=validate_event(
                "metadata.profile.requested",
                {
                    "canonical_key": canonical_key,
                    "trigger": "manual",
                    "force": force,
                    "requested_by": identity.user,
                },
            ),
        )
        uow.events.append([new_event])
        uow.commit()
    with UnitOfWork(engine) as uow:
        [event] = uow.events.list(
            tenant_id=identity.tenant_id, correlation_id=new_event.correlation_id, limit=1
        )
    return event


def save_profiles(
    engine: Engine, tenant_id: uuid.UUID, results: Sequence[ProfileResult], run_id: str | None
) -> list[uuid.UUID]:
    """Save the profiles of one run in one transaction (never half-written). Saving again for
    the same run changes nothing, so a retried step cannot double-count."""
    ids = []
    with UnitOfWork(engine) as uow:
        for result in results:
            urn = entity_urn(tenant_id, result.canonical_key)
            profile_id = (
                uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}/{urn}") if run_id else uuid.uuid4()
            )
            uow.profiles.add(_profile_row(profile_id, tenant_id, urn, result, run_id))
            ids.append(profile_id)
        uow.commit()
    return ids


def _profile_row(
    profile_id: uuid.UUID, tenant_id: uuid.UUID, urn: str, result: ProfileResult, run_id: str | None
) -> dict[str, Any]:
    data = result.to_json()
    return {
        "id": profile_id,
        "tenant_id": tenant_id,
        "entity_urn": urn,
        "canonical_key": result.canonical_key,
        "quality_score": result.quality_score,
        "completeness": result.completeness,
        "uniqueness": result.uniqueness,
        "validity": result.validity,
        "row_count": result.row_count,
        "columns": data["columns"],
        "score_note": result.score_note,
        "details": {
            "source": result.source,
            "table": result.table,
            "warnings": data.get("warnings", []),
        },
        "trigger": result.trigger,
        "approval_id": uuid.UUID(str(result.approval_id)) if result.approval_id else None,
        "run_id": run_id,
        "sql": result.sql,
        "sample": data.get("sample"),
        "duration_ms": result.duration_ms,
        "created_at": result.profiled_at,
    }
