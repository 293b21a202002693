"""Tier schedules: tier1 daily, tier2 weekly, each a pass over the tier's active bound entities
under the same cost guards as approvals (each table scanned once; skips recorded).

A schedule's tick only records its pass (`mdm_profile_pass`, once per slot); `profiling_pass_sensor`
plans it `MDSTUDIO_SCHEDULE_TABLES_PER_TICK` tables per tick, with its cursor saying how far it
got. Creating a run costs the daemon about a second once the asset graph has a node per table
and KPI (each run request subsets the job and records a plan), so a tick that planned a whole
pass grew with the catalog until it missed Dagster's 60 s; a page per tick keeps every tick the
same size whatever the catalog's. Run keys name the schedule's slot and the run's first table,
so a tick evaluated again (a crash before Dagster committed it) launches nothing twice.
"""

import datetime as dt

import dagster as dg
import orjson

from mdstudio_core.config import Settings
from mdstudio_core.domain.model import PassProgress, Tier
from mdstudio_core.service_layer import profile_requests
from mdstudio_pipelines.dagster_internals import store_observations
from mdstudio_pipelines.jobs import ProfileJob
from mdstudio_pipelines.lineage import AssetGraph
from mdstudio_pipelines.resources import CatalogResource
from mdstudio_pipelines.sensors import pack_runs, recently_requested, skip_observation

PASS_SENSOR = "profiling_pass_sensor"


def queue_pass(
    name: str, context: dg.ScheduleEvaluationContext, catalog: CatalogResource, tier: Tier
) -> dg.SkipReason:
    """Record the pass of schedule `name` at this tick's slot; `profiling_pass_sensor` plans
    it. The tick itself requests no run, so it takes the same time whatever the catalog."""
    now = dt.datetime.now(dt.UTC)
    slot = (context.scheduled_execution_time or now).strftime("%Y-%m-%dT%H:%M")
    queued = profile_requests.queue_pass(catalog.uow(), name, tier, slot, now)
    return dg.SkipReason(
        f"{tier.value} pass {queued.id} for {slot} queued: {PASS_SENSOR} requests its runs, "
        f"{catalog.settings.schedule_tables_per_tick} tables per tick "
        "(MDSTUDIO_SCHEDULE_TABLES_PER_TICK)"
    )


def build_profiling_schedules(settings: Settings, job: ProfileJob) -> list[dg.ScheduleDefinition]:
    """`tier1_profiling_schedule` (daily, `MDSTUDIO_TIER1_PROFILING_CRON`) and
    `tier2_profiling_schedule` (weekly, `MDSTUDIO_TIER2_PROFILING_CRON`)."""

    @dg.schedule(
        name="tier1_profiling_schedule",
        cron_schedule=settings.tier1_profiling_cron,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Daily profile of every active bound tier1 entity (cost guards apply), "
        f"planned by {PASS_SENSOR}; MDSTUDIO_TIER1_PROFILING_CRON moves it.",
    )
    def tier1_profiling_schedule(
        context: dg.ScheduleEvaluationContext, catalog: CatalogResource
    ) -> dg.SkipReason:
        return queue_pass("tier1_profiling_schedule", context, catalog, Tier.TIER1)

    @dg.schedule(
        name="tier2_profiling_schedule",
        cron_schedule=settings.tier2_profiling_cron,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Weekly profile of every active bound tier2 entity (cost guards apply), "
        f"planned by {PASS_SENSOR}; MDSTUDIO_TIER2_PROFILING_CRON moves it.",
    )
    def tier2_profiling_schedule(
        context: dg.ScheduleEvaluationContext, catalog: CatalogResource
    ) -> dg.SkipReason:
        return queue_pass("tier2_profiling_schedule", context, catalog, Tier.TIER2)

    return [tier1_profiling_schedule, tier2_profiling_schedule]


def build_profiling_pass_sensor(
    settings: Settings, job: ProfileJob, graph: AssetGraph
) -> dg.SensorDefinition:
    """`profiling_pass_sensor`, ticking every `MDSTUDIO_SENSOR_INTERVAL_SECONDS`."""

    @dg.sensor(
        name=PASS_SENSOR,
        job=job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        description="Plans the tier schedules' passes, MDSTUDIO_SCHEDULE_TABLES_PER_TICK tables "
        "per tick, and requests their runs.",
    )
    def profiling_pass_sensor(
        context: dg.SensorEvaluationContext, catalog: CatalogResource
    ) -> dg.SensorResult | dg.SkipReason:
        return plan_pass_page(context, catalog, graph)

    return profiling_pass_sensor


def plan_pass_page(
    context: dg.SensorEvaluationContext, catalog: CatalogResource, graph: AssetGraph
) -> dg.SensorResult | dg.SkipReason:
    """One page of the current pass: its tables' entities through the cost guards, the due
    tables packed into runs keyed by the pass's slot, the skips recorded."""
    settings = catalog.settings
    now = dt.datetime.now(dt.UTC)
    current = profile_requests.resume_pass(catalog.uow(), decode(context.cursor), now)
    if current is None:
        return dg.SkipReason("no scheduled pass to plan")
    profile_pass, progress = current
    page = profile_requests.pass_page(
        catalog.uow(), profile_pass, progress.planned_through, settings.schedule_tables_per_tick
    )
    slot = f"{profile_pass.schedule}:{profile_pass.slot}"
    profile_plan = profile_requests.plan(
        catalog.uow(),
        page.candidates,
        now=now,
        min_rerun=settings.min_rerun,
        recently_requested=recently_requested(
            context.instance, [c.entity for c in page.candidates], now, settings
        ),
    )
    store_observations(
        context.instance, [skip_observation(skip, slot=slot) for skip in profile_plan.skipped]
    )
    runs = pack_runs(profile_plan.batches, settings.tables_per_run, slot, graph)
    planned = PassProgress(
        pass_id=profile_pass.id,
        planned_through=page.through,
        tables_planned=progress.tables_planned + page.tables,
        runs_requested=progress.runs_requested + len(runs),
        finished=page.last,
    )
    return dg.SensorResult(run_requests=[run.request for run in runs], cursor=encode(planned))


def encode(progress: PassProgress) -> str:
    return orjson.dumps(
        {
            "pass": progress.pass_id,
            "through": progress.planned_through,
            "tables": progress.tables_planned,
            "runs": progress.runs_requested,
            "finished": progress.finished,
        }
    ).decode()


def decode(cursor: str | None) -> PassProgress | None:
    if not cursor:
        return None
    raw = orjson.loads(cursor)
    return PassProgress(
        pass_id=raw["pass"],
        planned_through=tuple(raw["through"]) if raw["through"] else None,
        tables_planned=raw["tables"],
        runs_requested=raw["runs"],
        finished=raw["finished"],
    )
