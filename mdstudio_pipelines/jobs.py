"""`profile_tables_job`: one run profiles a few tables of one source, each scanned once for
every entity bound to it.

Dagster runs a partitioned asset for one partition or a contiguous range; the entities due on
a table are an arbitrary set, so the job reports a materialization and a check evaluation per
entity partition of `entity_profile` itself. Each run is a new process (seconds of start-up),
so a run carries up to `MDSTUDIO_TABLES_PER_RUN` tables of one source, one after the other:
the same load on the warehouse as one run per table, a fraction of the runs."""

import uuid

import dagster as dg
from sqlalchemy.exc import OperationalError

from mdstudio_core.domain.errors import StoreTimeout
from mdstudio_core.domain.model import SkipReason, Trigger
from mdstudio_core.service_layer.profiling import ProfileTarget, run_profiles
from mdstudio_pipelines.checks import check_evaluation
from mdstudio_pipelines.partitions import (
    ENTITY_PROFILE,
    PROFILE_FAILED,
    PROFILE_SKIPPED,
    QUALITY_CHECK,
    partition_key,
)
from mdstudio_pipelines.profiling import profile_metadata
from mdstudio_pipelines.resources import CatalogResource


class TableConfig(dg.Config):
    table: str
    canonical_keys: list[str]
    triggers: dict[str, str] = {}
    approval_ids: dict[str, str] = {}

    def targets(self) -> list[ProfileTarget]:
        return [
            ProfileTarget(
                key,
                Trigger(self.triggers.get(key, Trigger.MANUAL)),
                uuid.UUID(self.approval_ids[key]) if key in self.approval_ids else None,
            )
            for key in self.canonical_keys
        ]


class ProfileRunConfig(dg.Config):
    tenant_id: str
    tables: list[TableConfig]


# The store gone (connection lost or refused, a store timeout) fails the step, which is tried
# again in the same run after 1, 2, 4 ... 32 s (about a minute in all): its profiles are saved
# once however often it is tried (see `run_profiles`). A profile failing on its own (missing
# table, timeout) is not retried: it would fail the same way.
STORE_RETRIES = 6


@dg.op(description="Profile each table once, then save and check every entity bound to it.")
def profile_tables(
    context: dg.OpExecutionContext, config: ProfileRunConfig, catalog: CatalogResource
) -> None:
    try:
        profile_run(context, config, catalog)
    except (OperationalError, StoreTimeout) as exc:
        context.log.warning(f"the store is unavailable: {type(exc).__name__}; trying again")
        raise dg.RetryRequested(
            max_retries=STORE_RETRIES, seconds_to_wait=2**context.retry_number
        ) from exc


def profile_run(
    context: dg.OpExecutionContext, config: ProfileRunConfig, catalog: CatalogResource
) -> None:
    """Each table of the run in turn: its profiles saved, then reported to Dagster."""
    tenant_id = uuid.UUID(config.tenant_id)
    failed: dict[str, str] = {}
    for table in config.tables:
        context.log.info(f"profiling {len(table.canonical_keys)} entities on {table.table}")
        outcome = run_profiles(
            catalog.uow(), catalog.settings, tenant_id, table.targets(), run_id=context.run_id
        )
        for key, error in outcome.failed.items():
            context.log_event(profile_observation(tenant_id, key, PROFILE_FAILED, error=error))
        failed.update(outcome.failed)
        if outcome.saved_before:
            context.log.info(f"saved by an earlier attempt: {', '.join(outcome.saved_before)}")
        for key, detail in outcome.unbound.items():
            context.log_event(
                profile_observation(
                    tenant_id,
                    key,
                    PROFILE_SKIPPED,
                    reason=SkipReason.NO_BINDING.value,
                    detail=f"when the run started: {detail}",
                )
            )
        for profile in outcome.profiles:
            partition = partition_key(tenant_id, profile.result.canonical_key)
            context.log_event(
                dg.AssetMaterialization(
                    asset_key=ENTITY_PROFILE,
                    partition=partition,
                    metadata=profile_metadata(profile),
                )
            )
            context.log_event(
                check_evaluation(ENTITY_PROFILE, QUALITY_CHECK, partition, profile.verdict)
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
