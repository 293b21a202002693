"""`profile_tables_job`: one run profiles a few tables of one source, each scanned once for
every entity bound to it.

Dagster runs a partitioned asset for one partition or a contiguous range; the entities due on
a table are an arbitrary set, so the job reports a materialization and a check evaluation per
entity partition of `entity_profile` itself. Each run is a new process (seconds of start-up),
so a run carries up to `MDSTUDIO_TABLES_PER_RUN` tables of one source, one after the other:
the same load on the warehouse as one run per table, a fraction of the runs."""

import uuid

import dagster as dg

from mdstudio_core.service_layer import profile_requests
from mdstudio_pipelines.partitions import (
    ENTITY_PROFILE,
    PROFILE_FAILED,
    PROFILE_SKIPPED,
    QUALITY_CHECK,
    partition_key,
)
from mdstudio_pipelines.profiling import profile_batch
from mdstudio_pipelines.resources import CatalogResource, QualityThresholds, WarehouseResource


class TableConfig(dg.Config):
    table: str
    canonical_keys: list[str]
    triggers: dict[str, str] = {}
    approval_ids: dict[str, str] = {}


class ProfileRunConfig(dg.Config):
    tenant_id: str
    tables: list[TableConfig]


@dg.op(description="Profile each table once, then save and check every entity bound to it.")
def profile_tables(
    context: dg.OpExecutionContext,
    config: ProfileRunConfig,
    catalog: CatalogResource,
    warehouse: WarehouseResource,
    thresholds: QualityThresholds,
) -> None:
    tenant_id = uuid.UUID(config.tenant_id)
    failed: dict[str, str] = {}
    for table in config.tables:
        context.log.info(f"profiling {len(table.canonical_keys)} entities on {table.table}")
        outcome = profile_batch(
            catalog,
            warehouse,
            thresholds,
            tenant_id,
            table.canonical_keys,
            triggers=table.triggers,
            approval_ids=table.approval_ids,
            run_id=context.run_id,
        )
        for key, error in outcome.failed.items():
            context.log_event(profile_observation(tenant_id, key, PROFILE_FAILED, error=error))
        failed.update(outcome.failed)
        for key in outcome.unbound:
            context.log_event(
                profile_observation(
                    tenant_id,
                    key,
                    PROFILE_SKIPPED,
                    reason=profile_requests.SkipReason.NO_BINDING.value,
                    detail="unbound when the run started",
                )
            )
        for profile in outcome.profiles:
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=ENTITY_PROFILE,
                    partition=profile.partition_key,
                    metadata=profile.metadata,
                )
            )
            context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=ENTITY_PROFILE,
                    check_name=QUALITY_CHECK,
                    passed=profile.check.passed,
                    partition=profile.partition_key,
                    severity=profile.check.severity,
                    description=profile.check.description,
                    metadata=profile.check.metadata,
                )
            )
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} entities could not be profiled: "
            + "; ".join(sorted(set(failed.values()))),
            allow_retries=False,
        )


def profile_observation(
    tenant_id: uuid.UUID, key: str, event_type: str, **details: str
) -> dg.AssetObservation:
    """A profiling decision or failure, on the entity's partition of `entity_profile`."""
    return dg.AssetObservation(
        asset_key=ENTITY_PROFILE,
        partition=partition_key(tenant_id, key),
        metadata={"event_type": event_type, **details},
    )


@dg.job(name="profile_tables_job", tags={"mdstudio/kind": "profile"})
def profile_tables_job() -> None:
    profile_tables()
