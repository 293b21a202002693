"""`profile_table_job`: one run scans one table once and profiles every entity bound to it.

Dagster runs a partitioned asset for one partition or a contiguous range; the entities due on
a table are an arbitrary set, so the job reports a materialization and a check evaluation per
entity partition of `entity_profile` itself."""

import uuid

import dagster as dg

from mdstudio_core.service_layer import profile_requests
from mdstudio_pipelines.partitions import ENTITY_PROFILE, QUALITY_CHECK, partition_key
from mdstudio_pipelines.profiling import profile_batch
from mdstudio_pipelines.resources import CatalogResource, QualityThresholds, WarehouseResource


class TableBatchConfig(dg.Config):
    tenant_id: str
    table: str
    canonical_keys: list[str]
    triggers: dict[str, str] = {}
    approval_ids: dict[str, str] = {}


@dg.op(description="Scan one table once and profile, save and check each entity bound to it.")
def profile_table(
    context: dg.OpExecutionContext,
    config: TableBatchConfig,
    catalog: CatalogResource,
    warehouse: WarehouseResource,
    thresholds: QualityThresholds,
) -> None:
    tenant_id = uuid.UUID(config.tenant_id)
    context.log.info(f"profiling {len(config.canonical_keys)} entities on {config.table}")
    outcomes, unbound = profile_batch(
        catalog,
        warehouse,
        thresholds,
        tenant_id,
        config.canonical_keys,
        triggers=config.triggers,
        approval_ids=config.approval_ids,
        run_id=context.run_id,
    )
    for key in unbound:
        context.log_event(
            dg.AssetObservation(
                asset_key=ENTITY_PROFILE,
                partition=partition_key(tenant_id, key),
                metadata={
                    "event_type": "metadata.profile.skipped",
                    "reason": profile_requests.SkipReason.NO_BINDING.value,
                    "detail": "unbound when the run started",
                },
            )
        )
    for outcome in outcomes:
        context.log_event(
            dg.AssetMaterialization(
                asset_key=ENTITY_PROFILE,
                partition=outcome.partition_key,
                metadata=outcome.metadata,
            )
        )
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=ENTITY_PROFILE,
                check_name=QUALITY_CHECK,
                passed=outcome.check.passed,
                partition=outcome.partition_key,
                severity=outcome.check.severity,
                description=outcome.check.description,
                metadata=outcome.check.metadata,
            )
        )


@dg.job(name="profile_table_job", tags={"mdstudio/kind": "profile"})
def profile_table_job() -> None:
    profile_table()
