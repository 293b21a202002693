"""Profiling a batch of entities inside a Dagster run: the shared body of the table job and
the per-entity asset. Everything it decides is in mdstudio_core; this turns results into
Dagster metadata and check evaluations."""

import uuid
from dataclasses import dataclass, field

import dagster as dg

from mdstudio_core.adapters.warehouse import ProfileError
from mdstudio_core.domain.model import Binding, EntityType, Tier
from mdstudio_core.domain.quality import ProfileResult
from mdstudio_core.service_layer import profile_requests, profiling
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from mdstudio_pipelines.checks import CheckOutcome, evaluate_threshold
from mdstudio_pipelines.partitions import partition_key
from mdstudio_pipelines.resources import CatalogResource, QualityThresholds, WarehouseResource


@dataclass
class BatchOutcome:
    """What profiling a batch gave: scored profiles, keys no longer bound, and keys whose table
    could not be profiled (with the error)."""

    profiles: list["ProfileOutcome"] = field(default_factory=list)
    unbound: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileOutcome:
    partition_key: str
    tier: Tier
    result: ProfileResult
    profile_id: uuid.UUID
    check: CheckOutcome

    @property
    def metadata(self) -> dict:
        result = self.result
        return {
            "quality_score": _float(result.quality_score),
            "completeness": _float(result.completeness),
            "uniqueness": _float(result.uniqueness),
            "validity": _float(result.validity),
            "dagster/row_count": result.row_count,
            "columns": _column_table(result),
            "tier": self.tier.value,
            "table": f"{result.source}.{result.table}",
            "trigger": result.trigger,
            "approval_id": result.approval_id or "",
            "profile_id": str(self.profile_id),
            "score_note": result.score_note or "",
            "duration_ms": result.duration_ms,
            "sql": dg.MetadataValue.md(f"```sql\n{result.sql}\n```"),
        }


def profile_batch(
    catalog: CatalogResource,
    warehouse: WarehouseResource,
    thresholds: QualityThresholds,
    tenant_id: uuid.UUID,
    canonical_keys: list[str],
    *,
    triggers: dict[str, str],
    approval_ids: dict[str, str],
    run_id: str,
) -> BatchOutcome:
    """Profile the live bindings of `canonical_keys` (one scan per table), save the profiles,
    and return them with their check outcome. A table that cannot be profiled costs only its
    own entities their profile (listed in `failed`); the others are saved and reported."""
    with UnitOfWork(catalog.engine) as uow:
        live = uow.entities.get_many(
            EntityType.GLOBAL_METADATA, [(tenant_id, key) for key in canonical_keys]
        )
    entities, tiers, outcome = [], {}, BatchOutcome()
    for key in canonical_keys:
        entity = live.get((tenant_id, key))
        if entity is None or not entity.get("binding"):
            outcome.unbound.append(key)
            continue
        tiers[key] = Tier(entity["tier"])
        entities.append(
            profiling.BoundEntity(
                canonical_key=key,
                binding=Binding.model_validate(entity["binding"]),
                tenant_id=str(tenant_id),
                approval_id=approval_ids.get(key),
                trigger=triggers.get(key, "manual"),
            )
        )
    for group in profiling.group_by_table(entities).values():
        try:
            results = profiling.profile_table(
                group,
                limits=profiling.limits_for_tiers(tiers[e.canonical_key] for e in group),
                engine_for=warehouse.engine_for,
            )
        except ProfileError as exc:
            outcome.failed.update({entity.canonical_key: str(exc) for entity in group})
            continue
        ids = profile_requests.save_profiles(catalog.engine, tenant_id, results, run_id)
        for result, profile_id in zip(results, ids, strict=True):
            tier = tiers[result.canonical_key]
            check = evaluate_threshold(
                tier, result.quality_score, thresholds.minimum(tier), result.score_note
            )
            outcome.profiles.append(
                ProfileOutcome(
                    partition_key(tenant_id, result.canonical_key), tier, result, profile_id, check
                )
            )
    return outcome


def _float(value: float | None) -> dg.MetadataValue:
    return dg.MetadataValue.float(value) if value is not None else dg.MetadataValue.null()


def _column_table(result: ProfileResult) -> dg.MetadataValue:
    fields = [
        "name",
        "n",
        "non_null",
        "distinct",
        "valid",
        "completeness",
        "uniqueness",
        "validity",
        "score",
    ]
    types = {"name": "string", "n": "int", "non_null": "int", "distinct": "int", "valid": "int"}
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({name: getattr(column, name) for name in fields})
            for column in result.columns
        ],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(name, types.get(name, "float")) for name in fields]
        ),
    )
