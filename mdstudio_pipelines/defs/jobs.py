"""`profile_tables_job`: one run profiles a few tables of one source, each scanned once for
every entity bound to it, and reports what it measured on the asset graph.

The job materializes the table assets (`[<tenant>, <source>, <schema>, <table>]`) of a
multi-asset that can be subset: the sensor and the schedules select the tables of their run and
say, in the run config, which entities are due on each and why; a UI "Materialize" selects
tables and profiles every field bound to them. Each run also reports, as it always did, a
materialization and a check evaluation per entity partition of `entity_profile`, and the new
trust of every KPI depending on a field it profiled (the KPI asset's materialization and its
`kpi_inputs_quality` check), computed in the transaction that saved the profiles.

Each run is a new process (seconds of start-up), so a run carries up to
`MDSTUDIO_TABLES_PER_RUN` tables of one source, one after the other. With no bound table in the
catalog there is no table asset, and the job is the same op without assets.

`event_retention_job`: archives the outbox's old events (`schedules.event_retention` asks for
it daily) in a run, not in the schedule's tick: a large backlog takes minutes, and a tick has
60 s."""

import datetime as dt
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
from sqlalchemy.exc import OperationalError

from mdstudio_core.config import Settings
from mdstudio_core.domain.errors import StoreTimeout
from mdstudio_core.domain.events import EventType
from mdstudio_core.domain.incremental import ProfileDay
from mdstudio_core.domain.lineage import CatalogSnapshot, KpiTrust, TableNode
from mdstudio_core.domain.model import SkipReason, Tier, Trigger
from mdstudio_core.domain.quality import quality_gate
from mdstudio_core.service_layer import lineage, retention
from mdstudio_core.service_layer.profiling import ProfileTarget, RunOutcome, run_profiles
from mdstudio_pipelines.defs.assets import table_spec
from mdstudio_pipelines.defs.checks import check_evaluation
from mdstudio_pipelines.defs.kpis import kpi_events
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.lib.asset_keys import (
    ENTITY_PROFILE,
    PROFILE_SKIPPED,
    QUALITY_CHECK,
    table_key_of,
)
from mdstudio_pipelines.lib.metadata import (
    day_metadata,
    pass_metadata,
    profile_metadata,
    table_metadata,
    worst_governed,
)
from mdstudio_pipelines.lib.partitions import partition_key

JOB_NAME = "profile_tables_job"
OP_NAME = "profile_tables"
JOB_TAGS = {"mdstudio/kind": "profile"}
JOB_DESCRIPTION = "Profile each table once, then save and check every entity bound to it."


class TableConfig(dg.Config):
    table: str
    canonical_keys: list[str]
    triggers: dict[str, str] = {}
    approval_ids: dict[str, str] = {}
    full: bool = False  # `mdstudio profiles run --full`: no incremental pass on this table

    def targets(self) -> list[ProfileTarget]:
        return [
            ProfileTarget(
                key,
                Trigger(self.triggers.get(key, Trigger.MANUAL)),
                uuid.UUID(self.approval_ids[key]) if key in self.approval_ids else None,
                full=self.full,
            )
            for key in self.canonical_keys
        ]


class ProfileRunConfig(dg.Config):
    """The tables of a run and the entities due on each. Empty (a UI "Materialize"): every
    field bound to the selected tables, trigger `manual`."""

    tenant_id: str = ""
    tables: list[TableConfig] = []


# The store gone (connection lost or refused, a store timeout) fails the step, which is tried
# again in the same run after 1, 2, 4 ... 32 s (about a minute in all): its profiles are saved
# once however often it is tried (see `run_profiles`). A profile failing on its own (missing
# table, timeout) is not retried: it would fail the same way.
STORE_RETRIES = 6


def retrying(context: dg.OpExecutionContext, exc: Exception) -> dg.RetryRequested:
    context.log.warning(f"the store is unavailable: {type(exc).__name__}; trying again")
    return dg.RetryRequested(max_retries=STORE_RETRIES, seconds_to_wait=2**context.retry_number)


def planned_tables(
    config: ProfileRunConfig,
    selected: set[dg.AssetKey],
    snapshot: CatalogSnapshot,
    catalog: CatalogResource,
) -> list[tuple[uuid.UUID, TableConfig]]:
    """What the run profiles: the config's tables, or every field of the selected tables."""
    if config.tables:
        return [(uuid.UUID(config.tenant_id), table) for table in config.tables]
    planned = []
    for node in snapshot.tables:
        if table_spec(catalog.settings, node).key in selected:
            keys = [f.canonical_key for f in node.fields]
            planned.append((node.tenant_id, TableConfig(table=node.label, canonical_keys=keys)))
    return planned


def profile_run(
    context: dg.OpExecutionContext,
    planned: list[tuple[uuid.UUID, TableConfig]],
    catalog: CatalogResource,
    days: Sequence[dt.date] = (),
) -> dict[dg.AssetKey, dict]:
    """Each table of the run in turn: its profiles saved, then reported to Dagster (entity
    partitions, checks, KPIs; a daily table's days, as partitions of its asset). Returns the
    other table assets' materialization metadata; raises `dg.Failure` naming the tables that
    failed, after the others are reported. `days`: days of daily tables to count again."""
    failed: dict[str, str] = {}
    labels = lineage.tenant_labels(catalog.uow(), {tenant for tenant, _ in planned})
    tables: dict[dg.AssetKey, dict] = {}
    kpis: dict[tuple[uuid.UUID, str], KpiTrust] = {}
    for tenant_id, table in planned:
        context.log.info(f"profiling {len(table.canonical_keys)} entities on {table.table}")
        outcome = run_profiles(
            catalog.uow(),
            catalog.settings,
            tenant_id,
            table.targets(),
            run_id=context.run_id,
            days=days,
        )
        for key, error in outcome.failed.items():
            context.log_event(
                profile_observation(tenant_id, key, EventType.PROFILE_FAILED, error=error)
            )
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
        key = table_key_of(catalog.settings, labels[tenant_id], table.table)
        if outcome.days:  # a daily table: its days are its asset's partitions
            for event in day_events(catalog.settings, key, tenant_id, table.table, outcome, days):
                context.log_event(event)
        elif outcome.profiles:
            tables[key] = table_metadata(tenant_id, table.table, outcome.profiles)
        kpis.update({(tenant_id, key): trust for key, trust in outcome.kpis.items()})
    for (tenant_id, _key), trust in kpis.items():  # once per run, as last computed
        for event in kpi_events(catalog.settings, labels[tenant_id], tenant_id, trust):
            context.log_event(event)
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} entities could not be profiled: "
            + "; ".join(sorted(set(failed.values()))),
            allow_retries=False,
        )
    return tables


def day_events(
    settings: Settings,
    key: dg.AssetKey,
    tenant_id: uuid.UUID,
    label: str,
    outcome: RunOutcome,
    asked: Sequence[dt.date] = (),
) -> list[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """A daily table's days as partitions of its asset: each day the pass read (and each day
    asked for, rows or not), with each field's score of that day's rows and their counts, and
    the `quality_score_threshold` check of the day (the worst tier1/tier2 field score against
    the strictest tier's minimum). The newest day also carries how the pass read the table."""
    by_day: dict[dt.date, dict[str, ProfileDay]] = {day: {} for day in asked}
    for canonical_key, days in outcome.days.items():
        for day in days:
            by_day.setdefault(day.day, {})[canonical_key] = day
    first = outcome.profiles[0].result if outcome.profiles else None
    events: list[dg.AssetMaterialization | dg.AssetCheckEvaluation] = []
    for position, (day, fields) in enumerate(sorted(by_day.items())):
        partition = day.isoformat()
        metadata = day_metadata(tenant_id, label, fields)
        if first is not None and position == len(by_day) - 1:
            metadata.update(pass_metadata(first, outcome.profiles))
        events.append(
            dg.AssetMaterialization(asset_key=key, partition=partition, metadata=metadata)
        )
        tiers = [Tier(d.tier) for d in fields.values() if d.tier]
        if tiers:
            verdict = quality_gate(
                min(tiers),
                worst_governed((d.tier, d.quality_score) for d in fields.values()),
                "no tier1 or tier2 field scored on this day",
                settings.quality_thresholds,
            )
            events.append(check_evaluation(key, QUALITY_CHECK, partition, verdict))
    return events


def profile_observation(
    tenant_id: uuid.UUID, key: str, event_type: str, **details: str
) -> dg.AssetObservation:
    """A profiling decision or failure, on the entity's partition of `entity_profile`
    (`str()`: Dagster stores plain strings, not `EventType` members)."""
    return dg.AssetObservation(
        asset_key=ENTITY_PROFILE,
        partition=partition_key(tenant_id, key),
        metadata={"event_type": str(event_type), **details},
    )


# A job, or the asset job `dg.define_asset_job` returns (resolved with the definitions).
ProfileJob = Any


def build_profile_job(
    snapshot: CatalogSnapshot, settings: Settings
) -> tuple[list[dg.AssetsDefinition], ProfileJob]:
    """The table assets (the `profile_tables` multi-asset, and one daily-partitioned asset per
    daily table) and `profile_tables_job`, which materializes the former and reports the days
    of the latter."""
    daily = [build_daily_asset(settings, node) for node in snapshot.tables if node.daily]
    specs = [table_spec(settings, node) for node in snapshot.tables if not node.daily]
    if not specs:
        return daily, _op_job()

    @dg.multi_asset(name=OP_NAME, specs=specs, can_subset=True, description=JOB_DESCRIPTION)
    def table_assets(
        context: dg.AssetExecutionContext, config: ProfileRunConfig, catalog: CatalogResource
    ) -> Iterator[dg.MaterializeResult]:
        selected = set(context.selected_asset_keys)
        try:
            results = profile_run(
                context.op_execution_context,
                planned_tables(config, selected, snapshot, catalog),
                catalog,
            )
        except (OperationalError, StoreTimeout) as exc:
            raise retrying(context.op_execution_context, exc) from exc
        for key, metadata in results.items():
            if key in selected:
                yield dg.MaterializeResult(asset_key=key, metadata=metadata)
            else:  # bound since this code location loaded: reported, not yet in the graph
                context.log_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))

    job = dg.define_asset_job(JOB_NAME, selection=[table_assets], tags=JOB_TAGS)
    return [table_assets, *daily], job


def build_daily_asset(settings: Settings, node: TableNode) -> dg.AssetsDefinition:
    """A daily table's asset: materializing chosen days (a backfill from the UI, one run for
    the range) profiles the table as a run does (incrementally where it can) and counts those
    days again whole, replacing their records."""
    spec = table_spec(settings, node)
    name = "profile_days__" + re.sub(r"[^A-Za-z0-9_]", "_", "__".join(spec.key.path))

    @dg.multi_asset(
        name=name,
        specs=[spec],
        check_specs=[
            dg.AssetCheckSpec(
                QUALITY_CHECK,
                asset=spec.key,
                partitions_def=spec.partitions_def,
                description="The day's worst tier1/tier2 field score against the strictest "
                "tier's minimum (MDSTUDIO_TIER1_MIN_SCORE, MDSTUDIO_TIER2_MIN_SCORE).",
            )
        ],
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
        description=f"Profile {node.label} and count the chosen days again.",
    )
    def daily_table(
        context: dg.AssetExecutionContext, catalog: CatalogResource
    ) -> Iterator[dg.MaterializeResult]:
        days = [dt.date.fromisoformat(key) for key in context.partition_keys]
        table = TableConfig(table=node.label, canonical_keys=[f.canonical_key for f in node.fields])
        try:
            profile_run(context.op_execution_context, [(node.tenant_id, table)], catalog, days)
        except (OperationalError, StoreTimeout) as exc:
            raise retrying(context.op_execution_context, exc) from exc
        yield from ()  # each day is reported as its own partition's materialization

    return daily_table


def _op_job() -> dg.JobDefinition:
    @dg.op(name=OP_NAME, description=JOB_DESCRIPTION)
    def profile_tables(
        context: dg.OpExecutionContext, config: ProfileRunConfig, catalog: CatalogResource
    ) -> None:
        try:
            planned = planned_tables(config, set(), CatalogSnapshot(), catalog)
            results = profile_run(context, planned, catalog)
        except (OperationalError, StoreTimeout) as exc:
            raise retrying(context, exc) from exc
        for key, metadata in results.items():
            context.log_event(dg.AssetMaterialization(asset_key=key, metadata=metadata))

    @dg.job(name=JOB_NAME, tags=JOB_TAGS)
    def profile_tables_job() -> None:
        profile_tables()

    return profile_tables_job


RETENTION_JOB = "event_retention_job"
# The schedule that asks for the job; the archives it makes are recorded under its name.
RETENTION_SCHEDULE = "event_retention"


@dg.op(name="archive_old_events")
def archive_old_events(context: dg.OpExecutionContext, catalog: CatalogResource) -> None:
    """Archive and remove the events older than MDSTUDIO_EVENT_RETENTION_DAYS."""
    settings = catalog.settings
    if settings.event_retention_days is None or settings.event_archive_dir is None:
        context.log.info("MDSTUDIO_EVENT_RETENTION_DAYS is unset: every event is kept")
        return
    now = dt.datetime.now(dt.UTC)
    before = now - dt.timedelta(days=settings.event_retention_days)
    report = retention.archive(
        catalog.uow, before, settings.event_archive_dir, RETENTION_SCHEDULE, now
    )
    context.log.info(
        f"archived {report.events} events before {before.isoformat()} "
        f"(ids {report.first_event_id} to {report.last_event_id}) to "
        f"{settings.event_archive_dir}; removed {report.removed} from mdm_event; the outbox "
        f"keeps events from {report.horizon + 1} on"
    )
    if report.held_back_by:
        context.log.warning(
            f"held back by {report.held_back_by} at event {report.held_back_at}: the events "
            "after it stay until it has handled them"
        )


@dg.job(name=RETENTION_JOB, tags={"mdstudio/kind": "retention"})
def event_retention_job() -> None:
    archive_old_events()
