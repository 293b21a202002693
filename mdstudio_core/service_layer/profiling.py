"""Profile a bound table once and score every entity bound to it.

Several entities are often bound to one table (one per business column, say). The table is
measured once, in one statement pair, and each entity's score covers its own columns only.
`run_profiles` is a profiling run (what a Dagster run executes): it loads the entities, profiles
each of their tables once, saves the profiles and judges each by the quality gate. The previews
profile one binding and save nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.engine import Engine

from mdstudio_core.adapters import warehouse
from mdstudio_core.adapters.incremental import Increment, measure_incremental, signature
from mdstudio_core.config import Settings
from mdstudio_core.domain.approvals import check_may_preview_entity
from mdstudio_core.domain.errors import InvalidInput, NotFound
from mdstudio_core.domain.events import NewEvent, validate_event
from mdstudio_core.domain.incidents import SYSTEM_ACTOR
from mdstudio_core.domain.incremental import (
    FULL,
    DayCounts,
    PassRequest,
    ProfileDay,
    TableState,
    full_reason,
)
from mdstudio_core.domain.lineage import KpiTrust
from mdstudio_core.domain.model import (
    Binding,
    ColumnRule,
    EntityType,
    Identity,
    Incremental,
    LiveEntity,
    ProfileLimits,
    Tier,
    Trigger,
    entity_urn,
    stored_binding,
)
from mdstudio_core.domain.quality import (
    DEFAULT_WEIGHTS,
    CheckVerdict,
    ColumnProfile,
    ProfileResult,
    ScoreWeights,
    StoredProfile,
    quality_gate,
    quality_score,
)
from mdstudio_core.service_layer import incidents, lineage
from mdstudio_core.service_layer.approvals import check_source_access, get_judged
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)
PROFILE_COMPLETED = "metadata.profile.completed"
PROFILE_FAILED = "metadata.profile.failed"
EngineFor = Callable[[str], Engine]
Entity = tuple[uuid.UUID, str]  # (tenant, canonical key)
TableKey = tuple[str, str | None, str]  # (source, schema, table)


@dataclass(frozen=True)
class BoundEntity:
    """An entity to profile: its canonical key and binding, and where the request came from."""

    canonical_key: str
    binding: Binding
    tenant_id: uuid.UUID | None = None
    approval_id: uuid.UUID | None = None
    trigger: Trigger = Trigger.MANUAL


def table_key(binding: Binding) -> TableKey:
    """Entities with the same key are profiled together."""
    return (binding.source, binding.schema_, binding.table)


def table_label(binding: Binding) -> str:
    """`source.schema.table` (or `source.table`), as errors and logs name a table."""
    return ".".join(part for part in table_key(binding) if part)


def group_by_table(entities: Iterable[BoundEntity]) -> dict[TableKey, list[BoundEntity]]:
    """Group entities so each table is profiled once."""
    groups: dict[TableKey, list[BoundEntity]] = {}
    for entity in entities:
        groups.setdefault(table_key(entity.binding), []).append(entity)
    return groups


def source_engines(settings: Settings) -> EngineFor:
    """Warehouse engines for the sources configured in `settings`."""
    return lambda source: warehouse.get_engine(source, settings.sources)


def profile_table(
    entities: Sequence[BoundEntity],
    *,
    limits: ProfileLimits | None = None,
    weights: ScoreWeights = DEFAULT_WEIGHTS,
    engine_for: EngineFor,
    full_reason: str | None = None,
) -> list[ProfileResult]:
    """Measure the table the entities are bound to, once, in full, and return one scored
    `ProfileResult` per entity, in the order given (a preview; a run keeps state with
    `profile_for_run`).

    All entities must be bound to the same (source, schema, table). A column bound by several
    entities with the same rules is measured once; with different rules, once per rule set.
    Raises a `warehouse.ProfileError` subclass (unknown source, unreachable source, missing
    table or column, invalid pattern, timeout) and returns nothing partial.
    """
    if not entities:
        return []
    source, schema, table = _one_table(entities)
    limits = limits or ProfileLimits()
    rules, position = _rules(entities)
    incremental = _declared(entities)
    if incremental is not None and limits.sample_percent is None:
        increment = measure_incremental(
            engine_for(source),
            table,
            rules,
            incremental,
            schema=schema,
            source=source,
            timeout_s=limits.timeout_s,
            full_reason=full_reason or "a preview reads the whole table and keeps no state",
        )
        return _results(entities, increment.metrics, position, weights, _how(increment))
    metrics = warehouse.measure_table(
        engine_for(source),
        table,
        rules,
        schema=schema,
        source=source,
        timeout_s=limits.timeout_s,
        sample_percent=limits.sample_percent,
    )
    how = Measured(rows_read=metrics.rows_read, full_reason=full_reason)
    return _results(entities, metrics, position, weights, how)


@dataclass(frozen=True)
class Measured:
    """How a table's profile was taken (see `ProfileResult`)."""

    mode: str = FULL
    watermark_before: str | None = None
    watermark_after: str | None = None
    rows_read: int | None = None
    full_reason: str | None = None
    probes: Mapping[str, str] = field(default_factory=dict)


def _how(increment: Increment) -> Measured:
    before, after = increment.window
    return Measured(
        mode=increment.mode,
        watermark_before=before,
        watermark_after=after,
        rows_read=increment.rows_read,
        full_reason=increment.full_reason,
        probes=increment.probes,
    )


def _one_table(entities: Sequence[BoundEntity]) -> TableKey:
    keys = {table_key(e.binding) for e in entities}
    if len(keys) != 1:
        raise ValueError(f"profile_table needs entities bound to one table, got {sorted(keys)}")
    return keys.pop()


def _rules(entities: Sequence[BoundEntity]) -> tuple[list[ColumnRule], dict[str, int]]:
    """The distinct rule sets of the entities' columns, and where each is measured."""
    rules: list[ColumnRule] = []
    position: dict[str, int] = {}
    for entity in entities:
        for rule in entity.binding.columns:
            key = signature(rule)
            if key not in position:
                position[key] = len(rules)
                rules.append(rule)
    return rules, position


def _declared(entities: Sequence[BoundEntity]) -> Incremental | None:
    """The table's `binding.incremental`, as its fields declare it (the first that does)."""
    return next((e.binding.incremental for e in entities if e.binding.incremental), None)


def _results(
    entities: Sequence[BoundEntity],
    metrics: warehouse.TableMetrics,
    position: Mapping[str, int],
    weights: ScoreWeights,
    how: Measured,
) -> list[ProfileResult]:
    """Each entity's profile: its own columns of the table's metrics, scored."""
    source, schema, table = _one_table(entities)
    results: list[ProfileResult] = []
    for entity in entities:
        columns = [
            _column_profile(rule, metrics.columns[position[signature(rule)]])
            for rule in entity.binding.columns
        ]
        summary = quality_score(columns, weights)
        warnings = [f"{c.name}: {note}" for c in summary.columns for note in c.notes]
        results.append(
            ProfileResult(
                canonical_key=entity.canonical_key,
                tenant_id=entity.tenant_id,
                source=source,
                table=f"{schema}.{table}" if schema else table,
                quality_score=summary.quality_score,
                completeness=summary.completeness,
                uniqueness=summary.uniqueness,
                validity=summary.validity,
                row_count=metrics.row_count,
                columns=summary.columns,
                score_note=summary.score_note,
                warnings=warnings,
                trigger=entity.trigger,
                approval_id=entity.approval_id,
                sql=metrics.sql,
                sql_params={
                    statement: {name: _jsonable(value) for name, value in params.items()}
                    for statement, params in metrics.sql_params.items()
                },
                sample=metrics.sample,
                duration_ms=metrics.duration_ms,
                profiled_at=metrics.profiled_at,
                mode=how.mode,
                watermark_before=how.watermark_before,
                watermark_after=how.watermark_after,
                rows_read=how.rows_read,
                full_reason=how.full_reason,
                probes=dict(how.probes),
            )
        )
    return results


def _column_profile(rule: ColumnRule, measured: warehouse.ColumnMetrics) -> ColumnProfile:
    return ColumnProfile(
        name=measured.name,
        data_type=measured.data_type,
        n=measured.n,
        non_null=measured.non_null,
        distinct=measured.distinct,
        valid=measured.valid,
        min=_jsonable(measured.min),
        max=_jsonable(measured.max),
        nullable=rule.nullable,
        unique=rule.unique,
        rules=list(measured.rules),
        rules_not_applied=list(measured.rules_not_applied),
        notes=list(measured.notes),
    )


# -- a table bound incrementally: its state, and its days --------------------------------------


@dataclass(frozen=True)
class KeptState:
    """What a run keeps of an incrementally bound table with its profiles: the new state (if
    the one it read, `read_version`, is still current) and each field's days."""

    table: TableKey
    state: TableState
    read_version: int | None
    days: Mapping[str, list[ProfileDay]]
    full: bool


@dataclass(frozen=True)
class TableProfile:
    results: list[ProfileResult]
    kept: KeptState | None = None


def profile_for_run(
    uow: UnitOfWork,
    settings: Settings,
    tenant_id: uuid.UUID,
    entities: Sequence[BoundEntity],
    *,
    limits: ProfileLimits,
    engine_for: EngineFor,
    full: bool = False,
    weights: ScoreWeights = DEFAULT_WEIGHTS,
    days: Sequence[dt.date] = (),
) -> TableProfile:
    """Profile one table for a run. A table bound with `binding.incremental` is read
    incrementally from its state when it can be (`domain.incremental.full_reason`, then the
    safety net), measuring the columns of every field bound to it so the state serves them
    all; `full` asks for a full profile; a daily table's `days` are counted again whole (a
    backfill of chosen days). Other tables are profiled in full, as always."""
    source, schema, table = _one_table(entities)
    with uow:
        bound = uow.entities.bound_to_table(tenant_id, source, schema, table)
        stored = uow.profile_states.get(tenant_id, source, schema, table)
    asked = {entity.canonical_key for entity in entities}
    everyone = [
        *entities,
        *(
            BoundEntity(live.canonical_key, live.binding, tenant_id=tenant_id)
            for live in bound
            if live.binding is not None and live.canonical_key not in asked
        ),
    ]
    declared = {e.binding.incremental.model_dump_json() for e in everyone if e.binding.incremental}
    if not declared:
        return TableProfile(
            profile_table(entities, limits=limits, weights=weights, engine_for=engine_for)
        )
    if len(declared) > 1:
        why = "fields bound to this table declare different binding.incremental: " + "; ".join(
            f"{e.canonical_key}: {e.binding.incremental.model_dump_json(exclude_none=True)}"
            for e in everyone
            if e.binding.incremental
        )
        return TableProfile(
            _legacy(entities, limits=limits, weights=weights, engine_for=engine_for, why=why)
        )
    incremental = _declared(everyone)
    assert incremental is not None
    rules, position = _rules(everyone)
    state, version = stored if stored is not None else (None, None)
    now = _now()
    reason = full_reason(
        state,
        PassRequest(
            incremental=incremental.model_dump(mode="json", exclude_none=True),
            specs=tuple(sorted(position)),
            now=now,
            full_every_days=settings.full_profile_every_days,
            forced=full,
            sampled=limits.sample_percent is not None,
        ),
    )
    if limits.sample_percent is not None:
        return TableProfile(
            _legacy(entities, limits=limits, weights=weights, engine_for=engine_for, why=reason)
        )
    increment = measure_incremental(
        engine_for(source),
        table,
        rules,
        incremental,
        schema=schema,
        source=source,
        timeout_s=limits.timeout_s,
        state=None if reason else state,
        full_reason=reason,
        now=now,
        recount=days,
    )
    results = _results(entities, increment.metrics, position, weights, _how(increment))
    days: dict[str, list[ProfileDay]] = {}
    if incremental.partition == "day":
        columns = {key: increment.metrics.columns[i] for key, i in position.items()}
        tiers = {live.canonical_key: live.tier.value for live in bound}
        for entity in everyone:
            days[entity.canonical_key] = [
                dataclasses.replace(
                    _day_record(entity, day, columns, weights, now),
                    tier=tiers.get(entity.canonical_key),
                )
                for day in increment.days
            ]
    kept = KeptState(
        table=(source, schema, table),
        state=increment.state,
        read_version=version,
        days=days,
        full=increment.mode == FULL,
    )
    return TableProfile(results, kept)


def _legacy(
    entities: Sequence[BoundEntity],
    *,
    limits: ProfileLimits,
    weights: ScoreWeights,
    engine_for: EngineFor,
    why: str | None,
) -> list[ProfileResult]:
    """A full profile that keeps no state (sampled, or declarations that disagree)."""
    source, schema, table = _one_table(entities)
    rules, position = _rules(entities)
    metrics = warehouse.measure_table(
        engine_for(source),
        table,
        rules,
        schema=schema,
        source=source,
        timeout_s=limits.timeout_s,
        sample_percent=limits.sample_percent,
    )
    how = Measured(rows_read=metrics.rows_read, full_reason=why)
    return _results(entities, metrics, position, weights, how)


def _day_record(
    entity: BoundEntity,
    day: DayCounts,
    measured: Mapping[str, warehouse.ColumnMetrics],
    weights: ScoreWeights,
    now: dt.datetime,
) -> ProfileDay:
    """One day of one field: its columns' counts over the day's rows, scored by the one
    formula (`quality_score`), as if the table held that day alone."""
    columns = []
    for rule in entity.binding.columns:
        key = signature(rule)
        counts = day.columns[key]
        column = measured[key]
        columns.append(
            ColumnProfile(
                name=column.name,
                data_type=column.data_type,
                n=day.row_count,
                non_null=counts.non_null,
                distinct=counts.distinct,
                valid=counts.valid,
                min=_jsonable(counts.min),
                max=_jsonable(counts.max),
                nullable=rule.nullable,
                unique=rule.unique,
                rules=list(column.rules),
                rules_not_applied=list(column.rules_not_applied),
            )
        )
    summary = quality_score(columns, weights)
    return ProfileDay(
        day=day.day,
        row_count=day.row_count,
        quality_score=summary.quality_score,
        columns={
            c.name: {
                "non_null": c.non_null,
                "valid": c.valid,
                "distinct": c.distinct,
                "min": c.min,
                "max": c.max,
                "completeness": c.completeness,
                "uniqueness": c.uniqueness,
                "validity": c.validity,
                "score": c.score,
            }
            for c in summary.columns
        },
        updated_at=now,
    )


def _jsonable(value: object) -> object:
    """Min/max and SQL parameters as JSON-friendly values: numbers stay numbers (Decimal
    becomes int or float), dates and times become ISO strings, so the profile stores and prints
    the same everywhere."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


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
    now = _now()
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
            replace_all=kept.full,
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
    now = _now()
    with uow:
        for canonical_key, tier in entities:
            failure_id = uuid.uuid5(
                uuid.NAMESPACE_URL,
                f"{run_id or uuid.uuid4()}/{entity_urn(tenant_id, canonical_key)}/failed",
            )
            if uow.events.recorded(tenant_id, canonical_key, PROFILE_FAILED, failure_id):
                continue
            payload = {
                "canonical_key": canonical_key,
                "tier": tier,
                "run_id": run_id,
                "error": error,
            }
            uow.events.append(
                [_profile_event(PROFILE_FAILED, tenant_id, canonical_key, failure_id, payload)]
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
    payload = {
        "canonical_key": result.canonical_key,
        "tier": tier,
        "quality_score": result.quality_score,
        "completeness": result.completeness,
        "uniqueness": result.uniqueness,
        "validity": result.validity,
        "row_count": result.row_count,
        "profile_id": profile_id,
        "run_id": run_id,
        "trigger": result.trigger,
        "approval_id": result.approval_id,
        "check_passed": verdict.passed,
        "threshold": verdict.threshold,
    }
    return _profile_event(PROFILE_COMPLETED, tenant_id, result.canonical_key, profile_id, payload)


def _profile_event(
    event_type: str,
    tenant_id: uuid.UUID,
    canonical_key: str,
    correlation_id: uuid.UUID,
    payload: dict[str, object],
) -> NewEvent:
    return NewEvent(
        type=event_type,
        tenant_id=tenant_id,
        entity_type=EntityType.GLOBAL_METADATA,
        entity_key=canonical_key,
        correlation_id=correlation_id,
        actor=SYSTEM_ACTOR,
        occurred_at=_now(),
        payload=validate_event(event_type, payload),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


# -- previews: evidence for a decider, nothing saved ----------------------------------------


@dataclass(frozen=True)
class Preview:
    """A profile taken now and the verdict the tier's check would give it."""

    result: ProfileResult
    verdict: CheckVerdict


@dataclass(frozen=True)
class PreviewPlan:
    """What a preview profiles, once the caller may see it: found in the store, run against
    the warehouse (`run_preview`), so an entry point can run the two on different threads."""

    tenant_id: uuid.UUID
    canonical_key: str
    binding: Binding
    tier: Tier
    approval_id: uuid.UUID | None


def plan_entity_preview(
    uow: UnitOfWork, settings: Settings, identity: Identity, canonical_key: str
) -> PreviewPlan:
    """The preview of a live entity's binding, for a holder of a workflow role."""
    check_may_preview_entity(identity)
    with uow:
        entity = uow.entities.get(EntityType.GLOBAL_METADATA, identity.tenant_id, canonical_key)
    if entity is None:
        raise NotFound(f"GLOBAL_METADATA {canonical_key} not found")
    return _plan(settings, identity, canonical_key, entity.binding, entity.tier, None)


def plan_approval_preview(
    uow: UnitOfWork, settings: Settings, identity: Identity, approval_id: uuid.UUID | str
) -> PreviewPlan:
    """The preview of the binding a pending request proposes, for those who may decide it
    (`Approval.check_may_preview`, on the role judged against the live state)."""
    approval = get_judged(uow, identity, approval_id)
    approval.check_may_preview(identity)
    if approval.entity_type is not EntityType.GLOBAL_METADATA:
        raise InvalidInput("only GLOBAL_METADATA requests carry a binding", field="approval_id")
    raw = approval.payload.get("binding")
    return _plan(
        settings,
        identity,
        approval.entity_key,
        stored_binding(raw) if raw else None,
        approval.tier,
        approval.id,
    )


def _plan(
    settings: Settings,
    identity: Identity,
    key: str,
    binding: Binding | None,
    tier: Tier,
    approval_id: uuid.UUID | None,
) -> PreviewPlan:
    if binding is None:
        raise InvalidInput(f"{key} has no binding to profile", field="binding")
    check_source_access(settings, identity, binding)
    return PreviewPlan(identity.tenant_id, key, binding, tier, approval_id)


def run_preview(
    settings: Settings, plan: PreviewPlan, engine_for: EngineFor | None = None
) -> Preview:
    """Profile the planned binding now and save nothing, within the tier's limits and at most
    `MDSTUDIO_PREVIEW_TIMEOUT_SECONDS` (`Settings.preview_limits`)."""
    limits = settings.preview_limits(plan.tier)
    entity = BoundEntity(
        plan.canonical_key,
        plan.binding,
        tenant_id=plan.tenant_id,
        approval_id=plan.approval_id,
        trigger=Trigger.PREVIEW,
    )
    try:
        [result] = profile_table(
            [entity], limits=limits, engine_for=engine_for or source_engines(settings)
        )
    except warehouse.ProfileTimeout as exc:
        if limits.timeout_s != settings.preview_timeout_seconds:
            raise  # the tier's own, shorter timeout: its message says so
        raise warehouse.ProfileTimeout(
            f"the preview of {table_label(plan.binding)} ran past "
            f"{settings.preview_timeout_seconds:g} s (MDSTUDIO_PREVIEW_TIMEOUT_SECONDS) and was "
            "cancelled; nothing was saved"
        ) from exc
    verdict = quality_gate(
        plan.tier, result.quality_score, result.score_note, settings.quality_thresholds
    )
    return Preview(result, verdict)


def preview_entity(
    uow: UnitOfWork,
    settings: Settings,
    identity: Identity,
    canonical_key: str,
    engine_for: EngineFor | None = None,
) -> Preview:
    """Profile a live entity's binding now and save nothing."""
    plan = plan_entity_preview(uow, settings, identity, canonical_key)
    return run_preview(settings, plan, engine_for)


def preview_approval(
    uow: UnitOfWork,
    settings: Settings,
    identity: Identity,
    approval_id: uuid.UUID | str,
    engine_for: EngineFor | None = None,
) -> Preview:
    """Profile the binding a pending approval proposes, before anyone approves it."""
    plan = plan_approval_preview(uow, settings, identity, approval_id)
    return run_preview(settings, plan, engine_for)


def limits_for(settings: Settings, tiers: Iterable[Tier]) -> ProfileLimits:
    """The limits for a table bound by entities of `tiers` (see `ProfileLimits.shared`)."""
    limits: Mapping[Tier, ProfileLimits] = settings.profile_limits
    return ProfileLimits.shared(limits[tier] for tier in tiers)
