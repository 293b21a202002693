"""Tier schedules: tier1 daily, tier2 weekly, each a pass over the tier's active bound entities
under the same cost guards as approvals (each table scanned once; skips recorded)."""

import datetime as dt

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Tier
from mdstudio_core.service_layer import profile_requests
from mdstudio_pipelines.dagster_internals import store_observations
from mdstudio_pipelines.jobs import ProfileJob
from mdstudio_pipelines.lineage import AssetGraph
from mdstudio_pipelines.resources import CatalogResource
from mdstudio_pipelines.sensors import pack_runs, recently_requested, skip_observation


def scheduled_pass(
    name: str,
    context: dg.ScheduleEvaluationContext,
    catalog: CatalogResource,
    tier: Tier,
    graph: AssetGraph,
) -> list[dg.RunRequest] | dg.SkipReason:
    """Run requests for every due table of `tier`; run keys name the schedule slot, so a
    re-evaluated tick never launches a table twice."""
    settings = catalog.settings
    now = dt.datetime.now(dt.UTC)
    slot = f"{name}:{(context.scheduled_execution_time or now).strftime('%Y-%m-%dT%H:%M')}"
    candidates = profile_requests.scheduled_candidates(catalog.uow(), tier)
    profile_plan = profile_requests.plan(
        catalog.uow(),
        candidates,
        now=now,
        min_rerun=settings.min_rerun,
        recently_requested=recently_requested(
            context.instance, [c.entity for c in candidates], now, settings
        ),
    )
    store_observations(
        context.instance, [skip_observation(skip, slot=slot) for skip in profile_plan.skipped]
    )
    if not profile_plan.batches:
        return dg.SkipReason(
            f"no {tier.value} entity due ({len(profile_plan.skipped)} within the rerun interval"
            " or unbound)"
        )
    runs = pack_runs(profile_plan.batches, settings.tables_per_run, slot, graph)
    return [run.request for run in runs]


def build_profiling_schedules(
    settings: Settings, job: ProfileJob, graph: AssetGraph
) -> list[dg.ScheduleDefinition]:
    """`tier1_profiling_schedule` (daily, `MDSTUDIO_TIER1_PROFILING_CRON`) and
    `tier2_profiling_schedule` (weekly, `MDSTUDIO_TIER2_PROFILING_CRON`)."""

    @dg.schedule(
        name="tier1_profiling_schedule",
        cron_schedule=settings.tier1_profiling_cron,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily profile of every active bound tier1 entity (cost guards apply); "
        "MDSTUDIO_TIER1_PROFILING_CRON moves it.",
    )
    def tier1_profiling_schedule(
        context: dg.ScheduleEvaluationContext, catalog: CatalogResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        return scheduled_pass("tier1_profiling_schedule", context, catalog, Tier.TIER1, graph)

    @dg.schedule(
        name="tier2_profiling_schedule",
        cron_schedule=settings.tier2_profiling_cron,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Weekly profile of every active bound tier2 entity (cost guards apply); "
        "MDSTUDIO_TIER2_PROFILING_CRON moves it.",
    )
    def tier2_profiling_schedule(
        context: dg.ScheduleEvaluationContext, catalog: CatalogResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        return scheduled_pass("tier2_profiling_schedule", context, catalog, Tier.TIER2, graph)

    return [tier1_profiling_schedule, tier2_profiling_schedule]
