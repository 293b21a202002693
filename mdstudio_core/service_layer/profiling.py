"""Profile a bound table once and score every entity bound to it.

Several entities are often bound to one table (one per business column, say). The table is
measured once, in one statement, and each entity's score covers its own columns only. The
Dagster layer groups entities by table (`group_by_table`) and calls `profile_table` per group;
the CLI preview calls it with a single entity and saves nothing.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.engine import Engine

from mdstudio_core.adapters import warehouse
from mdstudio_core.domain.errors import InvalidInput, NotFound
from mdstudio_core.domain.model import Binding, ColumnRule, EntityType, Identity, Tier
from mdstudio_core.domain.quality import (
    DEFAULT_WEIGHTS,
    ColumnProfile,
    ProfileResult,
    ScoreWeights,
    quality_score,
)
from mdstudio_core.service_layer.approvals import get_approval
from mdstudio_core.service_layer.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class BoundEntity:
    """An entity to profile: its canonical key and binding, and where the request came from."""

    canonical_key: str
    binding: Binding
    tenant_id: str | None = None
    approval_id: str | None = None
    trigger: str = "manual"  # approval | schedule | manual | preview, recorded on the profile


@dataclass(frozen=True)
class ProfileLimits:
    """Limits for big tables, set per tier: a statement timeout (a clear failure when exceeded,
    never a partial profile) and optional sampling (PostgreSQL ``TABLESAMPLE SYSTEM``)."""

    timeout_s: float | None = 600.0
    sample_percent: float | None = None


def tier_limits(environ: Mapping[str, str] | None = None) -> dict[Tier, ProfileLimits]:
    """Limits per tier from the environment: `MDSTUDIO_<TIER>_TIMEOUT_SECONDS` (default 600)
    and `MDSTUDIO_<TIER>_SAMPLE_PERCENT` (default: no sampling), e.g.
    `MDSTUDIO_TIER3_SAMPLE_PERCENT=5`."""
    env = os.environ if environ is None else environ
    limits = {}
    for tier in Tier:
        prefix = f"MDSTUDIO_{tier.value.upper()}_"
        timeout = _positive(env, prefix + "TIMEOUT_SECONDS") or ProfileLimits.timeout_s
        sample = _positive(env, prefix + "SAMPLE_PERCENT")
        if sample is not None and sample > 100:
            raise InvalidInput("must be at most 100", field=prefix + "SAMPLE_PERCENT")
        limits[tier] = ProfileLimits(timeout_s=timeout, sample_percent=sample)
    return limits


def _positive(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise InvalidInput("must be a number", field=name) from exc
    if value <= 0:
        raise InvalidInput("must be positive", field=name)
    return value


def limits_for_tiers(
    tiers: Iterable[Tier], table: Mapping[Tier, ProfileLimits] | None = None
) -> ProfileLimits:
    """The limits for a table shared by entities of several tiers: the shortest timeout, and
    sampling only when every tier samples (the smallest sample)."""
    table = tier_limits() if table is None else table
    chosen = [table.get(tier, ProfileLimits()) for tier in tiers] or [ProfileLimits()]
    timeouts = [c.timeout_s for c in chosen if c.timeout_s is not None]
    samples = [c.sample_percent for c in chosen]
    return ProfileLimits(
        timeout_s=min(timeouts) if timeouts else None,
        sample_percent=None if any(s is None for s in samples) else min(samples),  # type: ignore[type-var]
    )


TableKey = tuple[str, str | None, str]


def table_key(binding: Binding) -> TableKey:
    """(source, schema, table): entities with the same key are profiled together."""
    return (binding.source, binding.schema_, binding.table)


def group_by_table(entities: Iterable[BoundEntity]) -> dict[TableKey, list[BoundEntity]]:
    """Group entities so each table is profiled once."""
    groups: dict[TableKey, list[BoundEntity]] = {}
    for entity in entities:
        groups.setdefault(table_key(entity.binding), []).append(entity)
    return groups


def profile_table(
    entities: Sequence[BoundEntity],
    *,
    limits: ProfileLimits | None = None,
    weights: ScoreWeights = DEFAULT_WEIGHTS,
    engine_for: Callable[[str], Engine] = warehouse.get_engine,
) -> list[ProfileResult]:
    """Measure the table the entities are bound to, once, and return one scored
    `ProfileResult` per entity, in the order given.

    All entities must be bound to the same (source, schema, table). A column bound by several
    entities with the same rules is measured once; with different rules, once per rule set.
    Raises a `warehouse.ProfileError` subclass (unknown source, unreachable source, missing
    table or column, invalid pattern, timeout) and returns nothing partial.
    """
    if not entities:
        return []
    keys = {table_key(e.binding) for e in entities}
    if len(keys) != 1:
        raise ValueError(f"profile_table needs entities bound to one table, got {sorted(keys)}")
    source, schema, table = keys.pop()
    limits = limits or ProfileLimits()

    rules: list[ColumnRule] = []
    position: dict[str, int] = {}
    for entity in entities:
        for rule in entity.binding.columns:
            signature = rule.model_dump_json()
            if signature not in position:
                position[signature] = len(rules)
                rules.append(rule)

    metrics = warehouse.measure_table(
        engine_for(source),
        table,
        rules,
        schema=schema,
        source=source,
        timeout_s=limits.timeout_s,
        sample_percent=limits.sample_percent,
    )

    results: list[ProfileResult] = []
    for entity in entities:
        columns = []
        for rule in entity.binding.columns:
            measured = metrics.columns[position[rule.model_dump_json()]]
            columns.append(
                ColumnProfile(
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
            )
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
                sample=metrics.sample,
                duration_ms=metrics.duration_ms,
                profiled_at=metrics.profiled_at,
            )
        )
    return results


def profile_entity(
    canonical_key: str,
    binding: Binding,
    *,
    trigger: str = "preview",
    approval_id: str | None = None,
    tenant_id: str | None = None,
    limits: ProfileLimits | None = None,
    weights: ScoreWeights = DEFAULT_WEIGHTS,
    engine_for: Callable[[str], Engine] = warehouse.get_engine,
) -> ProfileResult:
    """Profile one entity (the CLI preview of a live entity or of a pending approval)."""
    [result] = profile_table(
        [
            BoundEntity(
                canonical_key,
                binding,
                tenant_id=tenant_id,
                approval_id=approval_id,
                trigger=trigger,
            )
        ],
        limits=limits,
        weights=weights,
        engine_for=engine_for,
    )
    return result


def _jsonable(value: object) -> object:
    """Min/max as JSON-friendly values: numbers stay numbers (Decimal becomes int or float),
    dates and times become ISO strings, so the profile stores and prints the same everywhere."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def preview_entity(engine: Engine, identity: Identity, canonical_key: str) -> ProfileResult:
    """Profile a live entity's binding now and save nothing: evidence for a steward."""
    with UnitOfWork(engine) as uow:
        entity = uow.entities.get(EntityType.GLOBAL_METADATA, identity.tenant_id, canonical_key)
    if entity is None:
        raise NotFound(f"GLOBAL_METADATA {canonical_key} not found")
    return _preview(identity, canonical_key, entity.get("binding"), Tier(entity["tier"]), None)


def preview_approval(engine: Engine, identity: Identity, approval_id: str) -> ProfileResult:
    """Profile the binding a pending approval proposes, before anyone approves it."""
    approval = get_approval(engine, identity, approval_id)
    if approval.entity_type is not EntityType.GLOBAL_METADATA:
        raise InvalidInput("only GLOBAL_METADATA requests carry a binding", field="approval_id")
    return _preview(
        identity,
        approval.entity_key,
        approval.payload.get("binding"),
        approval.tier,
        str(approval.id),
    )


def _preview(
    identity: Identity, key: str, binding: dict | None, tier: Tier, approval_id: str | None
) -> ProfileResult:
    if not binding:
        raise InvalidInput(f"{key} has no binding to profile", field="binding")
    return profile_entity(
        key,
        Binding.model_validate(binding),
        trigger="preview",
        approval_id=approval_id,
        tenant_id=str(identity.tenant_id),
        limits=tier_limits()[tier],
    )
