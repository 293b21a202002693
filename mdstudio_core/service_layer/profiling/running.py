"""A profiling run (what a Dagster run executes): it loads the entities, profiles each of their
tables once, saves the profiles and judges each by the quality gate."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import traceback
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mdstudio_core.adapters import warehouse
from mdstudio_core.config import Settings
from mdstudio_core.domain import clock
from mdstudio_core.domain.events import (
    EventPayload,
    EventType,
    NewEvent,
    ProfileCompleted,
    ProfileFailed,
    validate_event,
)
from mdstudio_core.domain.incidents import SYSTEM_ACTOR
from mdstudio_core.domain.incremental import (
    ProfileDay,
)
from mdstudio_core.domain.lineage import KpiTrust
from mdstudio_core.domain.model import (
    Binding,
    EntityType,
    LiveEntity,
    Tier,
    Trigger,
    entity_urn,
)
from mdstudio_core.domain.operations import ProfileLimits
from mdstudio_core.domain.quality import (
    CheckVerdict,
    ProfileResult,
    StoredProfile,
    quality_gate,
)
from mdstudio_core.service_layer import incidents, lineage
from mdstudio_core.service_layer.profiling.measuring import (
    BoundEntity,
    EngineFor,
    KeptState,
    group_by_table,
    profile_for_run,
    source_engines,
    table_label,
)
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)
Entity = tuple[uuid.UUID, str]  # (tenant, canonical key)


# -- which entities can be profiled ----------------------------------------------------------


def load_profiled(
    uow: UnitOfWork, entities: Sequence[Entity]
) -> tuple[dict[Entity, LiveEntity], dict[Entity, str]]:
    """The live metadata entities among `entities` that can be profiled (bound, not
    deprecated), and for the others why not. Runs in the caller's open unit of work; the
    planner (sensor, schedules) and the profiling run both decide with it."""
    live = uow.entities.get_many(EntityType.GLOBAL_METADATA, entities)
    profiled: dict[Entity, LiveEntity] = {}
    not_profiled: dict[Entity, str] = {}
    for entity in entities:
        found = live.get(entity)
        if found is None or found.binding is None:
            not_profiled[entity] = "the entity is not bound to a warehouse table"
        elif not found.profiled:
            not_profiled[entity] = f"the entity is {found.status.value}"
        else:
            profiled[entity] = found
    return profiled, not_profiled


# -- a profiling run ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileTarget:
    """One entity a run should profile, and why."""

    canonical_key: str
    trigger: Trigger = Trigger.MANUAL
    approval_id: uuid.UUID | None = None
    full: bool = False


@dataclass(frozen=True)
class SavedProfile:
    """A profile the run saved, with the tier it was judged at and the gate's verdict."""

    profile_id: uuid.UUID
    tier: Tier
    result: ProfileResult
    verdict: CheckVerdict


@dataclass
class RunOutcome:
    """What a run gave: saved profiles, entities it could not profile because they are not
    (or no longer) bound, entities whose table failed (with the error), and entities an
    earlier attempt of the same run saved already (a retried step neither scans their table
    again nor reports them twice); and the KPIs whose trust the new profiles changed, as last
    computed; and, for a daily table, the days the run read, per field."""

    profiles: list[SavedProfile] = field(default_factory=list)
    unbound: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    saved_before: list[str] = field(default_factory=list)
    kpis: dict[str, KpiTrust] = field(default_factory=dict)
    days: dict[str, list[ProfileDay]] = field(default_factory=dict)


def run_profiles(
    uow: UnitOfWork,
    settings: Settings,
    tenant_id: uuid.UUID,
    targets: Sequence[ProfileTarget],
    *,
    run_id: str,
    engine_for: EngineFor | None = None,
    days: Sequence[dt.date] = (),
) -> RunOutcome:
    """Profile the live bindings of `targets` (one scan per table), save each table's profiles
    in one transaction, and judge them by the quality gate. A table that cannot be profiled
    costs only its own entities their profile (listed in `failed`); the others are saved.
    Entities `run_id` saved already are skipped, so a retried step saves each profile once.
    `days`: days of daily tables to count again whole (see `profile_for_run`)."""
    engine_for = engine_for or source_engines(settings)
    with uow:
        profiled, not_profiled = load_profiled(
            uow, [(tenant_id, target.canonical_key) for target in targets]
        )
        saved = uow.profiles.saved_in_run(
            run_id, [entity_urn(tenant_id, target.canonical_key) for target in targets]
        )
    outcome = RunOutcome(unbound={key: why for (_, key), why in not_profiled.items()})
    tiers: dict[str, Tier] = {}
    entities: list[BoundEntity] = []
    full = {target.canonical_key for target in targets if target.full}
    for target in targets:
        live = profiled.get((tenant_id, target.canonical_key))
        if live is None or live.binding is None:
            continue
        if entity_urn(tenant_id, target.canonical_key) in saved:
            outcome.saved_before.append(target.canonical_key)
            continue
        access = settings.source_access(live.binding.source)
        refusal = access.refusal(live.binding, tenant_id)
        if refusal is not None:  # approved before the operator narrowed the source
            message = f"not allowed: {refusal[1]}"
            record_failures(
                uow, settings, tenant_id, [(target.canonical_key, live.tier)], run_id, message
            )
            outcome.failed[target.canonical_key] = message
            continue
        tiers[target.canonical_key] = live.tier
        entities.append(
            BoundEntity(
                target.canonical_key,
                live.binding,
                tenant_id=tenant_id,
                approval_id=target.approval_id,
                trigger=target.trigger,
            )
        )
    for group in group_by_table(entities).values():
        try:
            profiled = profile_for_run(
                uow,
                settings,
                tenant_id,
                group,
                limits=limits_for(settings, (tiers[e.canonical_key] for e in group)),
                engine_for=engine_for,
                full=any(entity.canonical_key in full for entity in group),
                days=days,
            )
        except Exception as exc:  # one table's fault must spare the others
            message = _failure_message(settings, exc, group[0].binding)
            failed = [(entity.canonical_key, tiers[entity.canonical_key]) for entity in group]
            record_failures(uow, settings, tenant_id, failed, run_id, message)
            outcome.failed.update({key: message for key, _ in failed})
            continue
        tiered = [(result, tiers[result.canonical_key]) for result in profiled.results]
        saved_profiles, kpis = save_table(
            uow, settings, tenant_id, tiered, run_id, kept=profiled.kept
        )
        if profiled.kept is not None and profiled.kept.days:
            ids = {saved.result.canonical_key: saved.profile_id for saved in saved_profiles}
            outcome.days.update(
                {
                    key: [dataclasses.replace(d, profile_id=ids.get(key)) for d in days]
                    for key, days in profiled.kept.days.items()
                }
            )
        outcome.profiles.extend(saved_profiles)
        outcome.kpis.update({trust.canonical_key: trust for trust in kpis})
    return outcome


def _failure_message(settings: Settings, exc: Exception, binding: Binding) -> str:
    """What a failed table's entities record (their `metadata.profile.failed` events, hence
    `GET /events` and webhooks). A `ProfileError` says what to fix, scrubbed of credentials (it
    may quote a driver's error); any other error's text is not ours to show: its type, the
    table and where it was raised are logged instead."""
    if isinstance(exc, warehouse.ProfileError):
        return settings.scrub(str(exc))
    message = f"{type(exc).__name__} while profiling {table_label(binding)}"
    logger.warning("%s at\n%s", message, "".join(traceback.format_tb(exc.__traceback__)))
    return message


def save_profiles(
    uow: UnitOfWork,
    settings: Settings,
    tenant_id: uuid.UUID,
    results: Sequence[tuple[ProfileResult, Tier]],
    run_id: str | None,
) -> list[SavedProfile]:
    """Save the profiles of one table, judged by the quality gate, in one transaction with
    their `metadata.profile.completed` events and what they do to the entities' incidents
    (never half-written). Saving again for the same run changes nothing: the profile id,
    derived from the run and the entity, is the idempotency key."""
    return save_table(uow, settings, tenant_id, results, run_id)[0]


def save_table(
    uow: UnitOfWork,
    settings: Settings,
    tenant_id: uuid.UUID,
    results: Sequence[tuple[ProfileResult, Tier]],
    run_id: str | None,
    *,
    kept: KeptState | None = None,
) -> tuple[list[SavedProfile], list[KpiTrust]]:
    """`save_profiles`, and in the same transaction the trust of every active KPI depending
    on a newly saved profile, recomputed and recorded (with its impact events), and for a
    table bound incrementally its new state and days (unless another pass kept a state since
    this one read it)."""
    saved = []
    landed = []
    now = clock.now()
    with uow:
        for result, tier in results:
            verdict = quality_gate(
                tier, result.quality_score, result.score_note, settings.quality_thresholds
            )
            urn = entity_urn(tenant_id, result.canonical_key)
            profile_id = (
                uuid.uuid5(uuid.NAMESPACE_URL, f"{run_id}/{urn}") if run_id else uuid.uuid4()
            )
            if uow.profiles.add(_stored(profile_id, tenant_id, urn, result, run_id)):
                uow.events.append(
                    [_completed(tenant_id, tier, result, profile_id, run_id, verdict)]
                )
                incidents.assess_entity(uow, settings, tenant_id, result.canonical_key, tier, now)
                landed.append(result.canonical_key)
            saved.append(SavedProfile(profile_id, tier, result, verdict))
        if kept is not None:
            _keep(uow, tenant_id, kept, {s.result.canonical_key: s.profile_id for s in saved}, now)
        kpis = lineage.refresh_dependents(uow, settings, tenant_id, landed) if landed else []
        uow.commit()
    return saved, kpis


def _keep(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    kept: KeptState,
    profile_ids: Mapping[str, uuid.UUID],
    now: dt.datetime,
) -> None:
    source, schema, table = kept.table
    if not uow.profile_states.put(
        tenant_id, source, schema, table, kept.state, kept.read_version, now
    ):
        return  # another pass (or an earlier attempt of this run) kept its own since
    for key, days in kept.days.items():
        uow.profile_days.write(
            tenant_id,
            key,
            [dataclasses.replace(day, profile_id=profile_ids.get(key)) for day in days],
            read=kept.days_read,
        )


def record_failures(
    uow: UnitOfWork,
    settings: Settings,
    tenant_id: uuid.UUID,
    entities: Sequence[tuple[str, Tier]],
    run_id: str | None,
    error: str,
) -> None:
    """Record that these entities' table could not be profiled: a `metadata.profile.failed`
    event each (once per run: a retried run finds it written) and what a failure does to
    their incidents, in one transaction."""
    now = clock.now()
    with uow:
        for canonical_key, tier in entities:
            failure_id = uuid.uuid5(
                uuid.NAMESPACE_URL,
                f"{run_id or uuid.uuid4()}/{entity_urn(tenant_id, canonical_key)}/failed",
            )
            if uow.events.recorded(tenant_id, canonical_key, EventType.PROFILE_FAILED, failure_id):
                continue
            payload = ProfileFailed(
                canonical_key=canonical_key, tier=tier, run_id=run_id, error=error
            )
            uow.events.append(
                [
                    _profile_event(
                        EventType.PROFILE_FAILED, tenant_id, canonical_key, failure_id, payload
                    )
                ]
            )
            incidents.assess_entity(uow, settings, tenant_id, canonical_key, tier, now)
        uow.commit()


def _completed(
    tenant_id: uuid.UUID,
    tier: Tier,
    result: ProfileResult,
    profile_id: uuid.UUID,
    run_id: str | None,
    verdict: CheckVerdict,
) -> NewEvent:
    payload = ProfileCompleted(
        canonical_key=result.canonical_key,
        tier=tier,
        quality_score=result.quality_score,
        completeness=result.completeness,
        uniqueness=result.uniqueness,
        validity=result.validity,
        row_count=result.row_count,
        profile_id=profile_id,
        run_id=run_id,
        trigger=result.trigger,
        approval_id=result.approval_id,
        check_passed=verdict.passed,
        threshold=verdict.threshold,
    )
    return _profile_event(
        EventType.PROFILE_COMPLETED, tenant_id, result.canonical_key, profile_id, payload
    )


def _profile_event(
    event_type: EventType,
    tenant_id: uuid.UUID,
    canonical_key: str,
    correlation_id: uuid.UUID,
    payload: EventPayload,
) -> NewEvent:
    return NewEvent(
        type=event_type,
        tenant_id=tenant_id,
        entity_type=EntityType.GLOBAL_METADATA,
        entity_key=canonical_key,
        correlation_id=correlation_id,
        actor=SYSTEM_ACTOR,
        occurred_at=clock.now(),
        payload=validate_event(event_type, payload),
    )


def _stored(
    profile_id: uuid.UUID, tenant_id: uuid.UUID, urn: str, result: ProfileResult, run_id: str | None
) -> StoredProfile:
    data = result.to_json()
    return StoredProfile(
        id=profile_id,
        tenant_id=tenant_id,
        entity_urn=urn,
        canonical_key=result.canonical_key,
        quality_score=result.quality_score,
        completeness=result.completeness,
        uniqueness=result.uniqueness,
        validity=result.validity,
        row_count=result.row_count,
        columns=data["columns"],
        score_note=result.score_note,
        details={
            "source": result.source,
            "table": result.table,
            "warnings": data["warnings"],
            "sql_params": data["sql_params"],
            **({"probes": data["probes"]} if data["probes"] else {}),
        },
        trigger=result.trigger.value,
        approval_id=result.approval_id,
        run_id=run_id,
        sql=result.sql,
        sample=data["sample"],
        duration_ms=result.duration_ms,
        created_at=result.profiled_at,
        mode=result.mode,
        watermark_before=result.watermark_before,
        watermark_after=result.watermark_after,
        rows_read=result.rows_read,
        full_reason=result.full_reason,
    )


def limits_for(settings: Settings, tiers: Iterable[Tier]) -> ProfileLimits:
    """The limits for a table bound by entities of `tiers` (see `ProfileLimits.shared`)."""
    limits: Mapping[Tier, ProfileLimits] = settings.profile_limits
    return ProfileLimits.shared(limits[tier] for tier in tiers)
