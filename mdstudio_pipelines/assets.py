"""Assets: the governed entity (observed from the catalog's events) and its quality profile."""

import dagster as dg

from mdstudio_pipelines.partitions import (
    CATALOG_ENTITIES,
    CATALOG_ENTITY,
    ENTITY_PROFILE,
    QUALITY_CHECK,
    split_partition_key,
)
from mdstudio_pipelines.profiling import profile_batch
from mdstudio_pipelines.resources import CatalogResource, QualityThresholds, WarehouseResource

catalog_entity = dg.AssetSpec(
    key=CATALOG_ENTITY,
    partitions_def=CATALOG_ENTITIES,
    group_name="mdstudio",
    description=(
        "A governed catalog entity. Its observations are the approval events of the "
        "mdstudio outbox (submitted changes, approvals, rejections), recorded by approval_sensor."
    ),
    kinds={"mdstudio"},
)


@dg.asset(
    key=ENTITY_PROFILE,
    partitions_def=CATALOG_ENTITIES,
    deps=[catalog_entity],
    group_name="mdstudio",
    kinds={"sql"},
    check_specs=[
        dg.AssetCheckSpec(
            QUALITY_CHECK,
            asset=ENTITY_PROFILE,
            partitions_def=CATALOG_ENTITIES,
            description="tier1 below its minimum fails with ERROR severity, tier2 below its "
            "minimum with WARN, tier3 informs (MDSTUDIO_TIER1_MIN_SCORE=80, "
            "MDSTUDIO_TIER2_MIN_SCORE=70 by default)",
        )
    ],
    description=(
        "Data-quality profile of the warehouse columns an entity is bound to: completeness, "
        "uniqueness and validity, weighted into a 0-100 quality score. Approval-driven and "
        "scheduled profiles run as profile_tables_job (one scan per table); materializing a "
        "partition here profiles one entity on demand."
    ),
)
def entity_profile(
    context: dg.AssetExecutionContext,
    catalog: CatalogResource,
    warehouse: WarehouseResource,
    thresholds: QualityThresholds,
) -> dg.MaterializeResult:
    tenant_id, key = split_partition_key(context.partition_key)
    outcome = profile_batch(
        catalog,
        warehouse,
        thresholds,
        tenant_id,
        [key],
        triggers={key: context.run.tags.get("mdstudio/trigger", "manual")},
        approval_ids={},
        run_id=context.run_id,
    )
    if outcome.unbound:
        raise dg.Failure(
            f"NO_BINDING: {key} is not bound to a warehouse table", allow_retries=False
        )
    if outcome.failed:
        raise dg.Failure(f"{key} could not be profiled: {outcome.failed[key]}", allow_retries=False)
    [profile] = outcome.profiles
    return dg.MaterializeResult(
        metadata=profile.metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=QUALITY_CHECK,
                passed=profile.check.passed,
                severity=profile.check.severity,
                description=profile.check.description,
                metadata=profile.check.metadata,
            )
        ],
    )
