"""Measure a bound table once and score every entity bound to it.

Several entities are often bound to one table (one per business column, say). The table is
measured once, in one statement pair, and each entity's score covers its own columns only; a
table bound incrementally is read from its kept state when it can be.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.engine import Engine

from mdstudio_core.adapters import warehouse
from mdstudio_core.adapters.incremental import Increment, measure_incremental, signature
from mdstudio_core.config import Settings
from mdstudio_core.domain import clock
from mdstudio_core.domain.incremental import (
    FULL,
    Counts,
    DayCounts,
    DaysRead,
    PassRequest,
    ProfileDay,
    TableState,
    full_reason,
)
from mdstudio_core.domain.model import (
    Binding,
    ColumnRule,
    Incremental,
    Trigger,
)
from mdstudio_core.domain.operations import ProfileLimits
from mdstudio_core.domain.quality import (
    DEFAULT_WEIGHTS,
    ColumnProfile,
    ProfileResult,
    ScoreWeights,
    quality_score,
)
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

EngineFor = Callable[[str], Engine]
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
    """The engine of each warehouse source `settings` configure, one pool per source for the
    life of the process."""
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
    limits = limits or ProfileLimits()
    incremental = _declared(entities)
    if incremental is None or limits.sample_percent is not None:
        return _legacy(
            entities, limits=limits, weights=weights, engine_for=engine_for, why=full_reason
        )
    _, position = _rules(entities)
    why = full_reason or "a preview reads the whole table and keeps no state"
    increment = _read_increment(entities, incremental, limits, engine_for, full_reason=why)
    return _results(entities, increment.metrics, position, weights, _how(increment))


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
            _column_profile(rule, column, column, column.n, column.notes)
            for rule in entity.binding.columns
            for column in [metrics.columns[position[signature(rule)]]]
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


def _column_profile(
    rule: ColumnRule,
    measured: warehouse.ColumnMetrics,
    counts: warehouse.ColumnMetrics | Counts,
    n: int,
    notes: Sequence[str] = (),
) -> ColumnProfile:
    """A column as the quality score reads it: what the table's pass found of the column (its
    name, type and rules), counted over `n` rows by `counts` (the pass's own, or one day's)."""
    return ColumnProfile(
        name=measured.name,
        data_type=measured.data_type,
        n=n,
        non_null=counts.non_null,
        distinct=counts.distinct,
        valid=counts.valid,
        min=_jsonable(counts.min),
        max=_jsonable(counts.max),
        nullable=rule.nullable,
        unique=rule.unique,
        rules=list(measured.rules),
        rules_not_applied=list(measured.rules_not_applied),
        notes=list(notes),
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
    days_read: DaysRead


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
    _, position = _rules(everyone)
    state, version = stored if stored is not None else (None, None)
    now = clock.now()
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
    increment = _read_increment(
        everyone,
        incremental,
        limits,
        engine_for,
        full_reason=reason,
        state=None if reason else state,
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
        days_read=increment.days_read,
    )
    return TableProfile(results, kept)


def _read_increment(
    entities: Sequence[BoundEntity],
    incremental: Incremental,
    limits: ProfileLimits,
    engine_for: EngineFor,
    *,
    full_reason: str | None,
    state: TableState | None = None,
    now: dt.datetime | None = None,
    recount: Sequence[dt.date] = (),
) -> Increment:
    """Read the entities' incrementally bound table from `state`, or in full (`full_reason`
    says why), measuring every entity's columns, within the limits' timeout."""
    source, schema, table = _one_table(entities)
    rules, _ = _rules(entities)
    return measure_incremental(
        engine_for(source),
        table,
        rules,
        incremental,
        schema=schema,
        source=source,
        timeout_s=limits.timeout_s,
        state=state,
        full_reason=full_reason,
        now=now,
        recount=recount,
    )


def _legacy(
    entities: Sequence[BoundEntity],
    *,
    limits: ProfileLimits,
    weights: ScoreWeights,
    engine_for: EngineFor,
    why: str | None,
) -> list[ProfileResult]:
    """A full profile that keeps no state (a preview, sampled, or declarations that disagree)."""
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
    columns = [
        _column_profile(rule, measured[key], day.columns[key], day.row_count)
        for rule in entity.binding.columns
        for key in [signature(rule)]
    ]
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
