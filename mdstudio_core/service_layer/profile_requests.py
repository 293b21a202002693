"""Which entities get profiled, and when: the cost guards between "a profile is due" and a scan.

A profile becomes due when an approval changes a binding (`metadata.profile.due`), when a KPI is
approved with new inputs (`lineage.changed`: each input, reason `KPI_DEPENDENCY`), when a
steward asks for one (`metadata.profile.requested`, from `mdstudio profiles run`), or when a
tier's schedule comes round. Before any warehouse is touched, each candidate passes the guards:

* `NO_BINDING`: the live entity has no binding (or is gone or deprecated): nothing to scan;
* `COST_GUARD`: it was profiled, or a profile was requested, within the minimum rerun interval
  (`Settings.min_rerun`, `MDSTUDIO_MIN_RERUN_HOURS`, default 12); a manual request with `force`
  passes.

The rest are grouped by table so that each table is scanned once per batch, however many
entities are bound to it. Orchestration (Dagster) calls these functions; it decides nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mdstudio_core.domain import clock
from mdstudio_core.domain.errors import NotFound
from mdstudio_core.domain.events import (
    Event,
    EventType,
    LineageChanged,
    NewEvent,
    ProfileDue,
    ProfileRequested,
    read_payload,
    validate_event,
)
from mdstudio_core.domain.model import (
    EntityType,
    Identity,
    Priority,
    ProfileReason,
    SkipReason,
    Tier,
    Trigger,
)
from mdstudio_core.domain.operations import PassProgress, ProfilePass, TablePosition
from mdstudio_core.service_layer.profiling import Entity, load_profiled, table_key
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

PROFILE_EVENTS = (EventType.PROFILE_DUE, EventType.PROFILE_REQUESTED)


@dataclass(frozen=True)
class ProfileCandidate:
    """An entity someone or something wants profiled, and why."""

    tenant_id: uuid.UUID
    canonical_key: str
    trigger: Trigger
    reason: ProfileReason
    priority: Priority = Priority.NORMAL
    approval_id: uuid.UUID | None = None
    event_ids: tuple[int, ...] = ()
    force: bool = False
    full: bool = False

    @property
    def entity(self) -> Entity:
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
            else f"{self.source}.{self.table}"
        )

    @property
    def tier(self) -> Tier:
        """The most governed tier in the batch (tier1 before tier2 before tier3)."""
        return min(entity.tier for entity in self.entities)

    @property
    def priority(self) -> Priority:
        return Priority.highest(entity.candidate.priority for entity in self.entities)

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
    merged: dict[Entity, ProfileCandidate] = {}
    for event in events:
        for candidate in _kpi_dependencies(event):
            merged.setdefault(candidate.entity, candidate)
        if event.type not in PROFILE_EVENTS:
            continue
        candidate = _candidate(event)
        previous = merged.get(candidate.entity)
        if previous is not None:
            candidate = dataclasses.replace(
                candidate,
                event_ids=previous.event_ids + candidate.event_ids,
                force=previous.force or candidate.force,
                full=previous.full or candidate.full,
                priority=Priority.highest((previous.priority, candidate.priority)),
            )
        merged[candidate.entity] = candidate
    return list(merged.values())


def _candidate(event: Event) -> ProfileCandidate:
    """A profile asked for by a person (`metadata.profile.requested`) or due after a
    structural approval (`metadata.profile.due`)."""
    if event.type == EventType.PROFILE_REQUESTED:
        requested = read_payload(event, ProfileRequested)
        return ProfileCandidate(
            tenant_id=event.tenant_id,
            canonical_key=event.entity_key,
            trigger=Trigger.MANUAL,
            reason=ProfileReason.MANUAL,
            priority=Priority.HIGH,
            approval_id=None,
            event_ids=(event.id,),
            force=requested.force,
            full=requested.full,
        )
    due = read_payload(event, ProfileDue)
    return ProfileCandidate(
        tenant_id=event.tenant_id,
        canonical_key=event.entity_key,
        trigger=Trigger.APPROVAL,
        reason=due.reason,
        priority=due.priority,
        approval_id=due.approval_id,
        event_ids=(event.id,),
    )


def _kpi_dependencies(event: Event) -> list[ProfileCandidate]:
    """A KPI approved with new inputs (`lineage.changed`) asks for a profile of each: the
    guards then skip those profiled within the rerun interval (COST_GUARD) or unbound
    (NO_BINDING), and the rest are scanned with the other due tables."""
    if event.type != EventType.LINEAGE_CHANGED:
        return []
    return [
        ProfileCandidate(
            tenant_id=event.tenant_id,
            canonical_key=key,
            trigger=Trigger.APPROVAL,
            reason=ProfileReason.KPI_DEPENDENCY,
            priority=Priority.NORMAL,
            approval_id=event.correlation_id,
            event_ids=(event.id,),
        )
        for key in read_payload(event, LineageChanged).added_inputs
    ]


def plan(
    uow: UnitOfWork,
    candidates: Sequence[ProfileCandidate],
    *,
    now: dt.datetime,
    min_rerun: dt.timedelta,
    recently_requested: Mapping[Entity, dt.datetime] | None = None,
) -> ProfilePlan:
    """Apply the guards and group what remains by table.

    `recently_requested` holds when the orchestrator last asked for a profile of an entity
    whose result may not be saved yet, so a second request inside the interval is a
    COST_GUARD skip even while the first run is still going.
    """
    entities = [candidate.entity for candidate in candidates]
    with uow:
        profiled, not_profiled = load_profiled(uow, entities)
        last_profiled = uow.profiles.last_profiled_at(list(profiled))
    recently_requested = recently_requested or {}
    result = ProfilePlan()
    groups: dict[tuple[uuid.UUID, str, str | None, str], list[PlannedEntity]] = {}
    for candidate in candidates:
        entity = profiled.get(candidate.entity)
        if entity is None or entity.binding is None:
            why = not_profiled.get(candidate.entity, "the entity cannot be profiled")
            result.skipped.append(Skip(candidate, SkipReason.NO_BINDING, why))
            continue
        last = max(
            (
                at
                for at in (
                    last_profiled.get(candidate.entity),
                    recently_requested.get(candidate.entity),
                )
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
        key = (candidate.tenant_id, *table_key(entity.binding))
        groups.setdefault(key, []).append(PlannedEntity(candidate, entity.tier))
    result.batches = [
        TableBatch(tenant_id, source, schema, table, tuple(planned))
        for (tenant_id, source, schema, table), planned in sorted(
            groups.items(), key=lambda item: (str(item[0][0]), *map(str, item[0][1:]))
        )
    ]
    return result


def queue_pass(
    uow: UnitOfWork, schedule: str, tier: Tier, slot: str, now: dt.datetime
) -> ProfilePass:
    """Record a scheduled pass of `tier` (`schedule` at `slot`): once, however often the
    schedule's tick is evaluated. The orchestrator then plans it a page at a time (`pass_page`),
    so no tick's work grows with the catalog."""
    with uow:
        found = uow.passes.add(schedule, tier, slot, now)
        uow.commit()
    return found


def resume_pass(
    uow: UnitOfWork, committed: PassProgress | None, now: dt.datetime
) -> tuple[ProfilePass, PassProgress] | None:
    """Record how far the orchestrator's last committed tick planned (so operators see a
    pass's progress in `mdm_profile_pass`), and return the pass to plan next with where it
    stands: the same pass until it is finished, then the oldest open one after it."""
    with uow:
        current = None
        if committed is not None:
            recorded = uow.passes.get(committed.pass_id)
            if recorded is not None and _progress(recorded) != committed:
                uow.passes.record(committed, now)
                uow.commit()
            if recorded is not None and not committed.finished:
                current = (recorded, committed)
        if current is None:
            after = committed.pass_id if committed is not None else 0
            found = uow.passes.next_open(after)
            current = (found, PassProgress(found.id)) if found is not None else None
    return current


def _progress(recorded: ProfilePass) -> PassProgress:
    return PassProgress(
        pass_id=recorded.id,
        planned_through=recorded.planned_through,
        tables_planned=recorded.tables_planned,
        runs_requested=recorded.runs_requested,
        finished=recorded.finished_at is not None,
    )


@dataclass(frozen=True)
class PassPage:
    """The candidates of one page of a scheduled pass: every active bound entity of its tier
    on the next tables (each table whole, so it is scanned once), and where the page ends."""

    candidates: list[ProfileCandidate]
    tables: int
    through: TablePosition | None
    last: bool


def pass_page(
    uow: UnitOfWork, profile_pass: ProfilePass, after: TablePosition | None, tables: int
) -> PassPage:
    """The next `tables` tables of the pass after `after` (every tenant's, in `bound_tables`
    order) and the entities bound to them."""
    tier = profile_pass.tier
    with uow:
        found = uow.entities.bound_tables(tier, after, tables + 1)
        page = found[:tables]
        entities = uow.entities.bound_on_tables(tier, after, page[-1]) if page else []
    candidates = [
        ProfileCandidate(
            tenant_id=entity.tenant_id,
            canonical_key=entity.canonical_key,
            trigger=Trigger.SCHEDULE,
            reason=ProfileReason.SCHEDULED,
            priority=Priority.NORMAL if tier is Tier.TIER1 else Priority.LOW,
        )
        for entity in entities
    ]
    return PassPage(
        candidates=candidates,
        tables=len(page),
        through=page[-1] if page else after,
        last=len(found) <= tables,
    )


def request_profile(
    uow: UnitOfWork,
    identity: Identity,
    canonical_key: str,
    *,
    force: bool = False,
    full: bool = False,
) -> Event:
    """Ask for a manual profile of an entity: an outbox event the orchestrator picks up like
    any other, so the request is recorded and never lost. `force` passes the interval; `full`
    reads the whole table even where an incremental pass could (`binding.incremental`)."""
    with uow:
        if uow.entities.get(EntityType.GLOBAL_METADATA, identity.tenant_id, canonical_key) is None:
            raise NotFound(f"GLOBAL_METADATA {canonical_key} not found")
        [event] = uow.events.append(
            [
                NewEvent(
                    type=EventType.PROFILE_REQUESTED,
                    tenant_id=identity.tenant_id,
                    entity_type=EntityType.GLOBAL_METADATA,
                    entity_key=canonical_key,
                    correlation_id=uuid.uuid4(),
                    actor=identity.user,
                    occurred_at=clock.now(),
                    payload=validate_event(
                        EventType.PROFILE_REQUESTED,
                        ProfileRequested(
                            canonical_key=canonical_key,
                            trigger=Trigger.MANUAL,
                            force=force,
                            requested_by=identity.user,
                            full=full,
                        ),
                    ),
                )
            ]
        )
        uow.commit()
    return event
