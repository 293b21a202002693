"""Assets: the governed entity (observed from the catalog's events) and its quality profile."""

import dagster as dg

from mdstudio_core.domain.model import Trigger
from mdstudio_core.service_layer.profiling import ProfileTarget, run_profiles
from mdstudio_pipelines.checks import check_result
from mdstudio_pipelines.partitions import (
    CATALOG_ENTITIES,
    CATALOG_ENTITY,
    ENTITY_PROFILE,
    QUALITY_CHECK,
    split_partition_key,
)
from mdstudio_pipelines.profiling import profile_metadata
from mdstudio_pipelines.resources import CatalogResource

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
    context: dg.AssetExecutionContext, catalog: CatalogResource
) -> dg.MaterializeResult:
    tenant_id, key = split_partition_key(context.partition_key)
    outcome = run_profiles(
        catalog.uow(),
        catalog.settings,
        tenant_id,
        [ProfileTarget(key, Trigger.MANUAL)],  # a person asked, from the UI
        run_id=context.run.run_id,
    )
    if key in outcome.unbound:
        raise dg.Failure(f"NO_BINDING: {key}: {outcome.unbound[key]}", allow_retries=False)
    if key in outcome.failed:
        raise dg.Failure(f"{key} could not be profiled: {outcome.failed[key]}", allow_retries=False)
    [profile] = outcome.profiles
    return dg.MaterializeResult(
        metadata=profile_metadata(profile),
        check_results=[check_result(QUALITY_CHECK, profile.verdict)],
    )
