"""The schedules. Tier schedules, one per tier built in one loop: tier1 daily, tier2 weekly,
each a pass over the tier's active bound entities under the same cost guards as approvals (each
table scanned once; skips recorded).

A schedule's tick only records its pass (`mdm_profile_pass`, once per slot);
`profiling_pass_sensor` (`sensors/profiling_pass.py`) plans it
`MDSTUDIO_SCHEDULE_TABLES_PER_TICK` tables per tick, with its cursor saying how far it got.
Creating a run costs the daemon about a second once the asset graph has a node per table
and KPI (each run request subsets the job and records a plan), so a tick that planned a whole
pass grew with the catalog until it missed Dagster's 60 s; a page per tick keeps every tick the
same size whatever the catalog's. Run keys name the schedule's slot and the run's first table,
so a tick evaluated again (a crash before Dagster committed it) launches nothing twice.

`event_retention`: daily, when `MDSTUDIO_EVENT_RETENTION_DAYS` is set, a run of
`event_retention_job` archives the outbox's events older than that to
`MDSTUDIO_EVENT_ARCHIVE_DIR` (Parquet, one file per month) and removes them, as `mdstudio
events archive` does: never an event a consumer has not handled.
"""

import datetime as dt

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Tier
from mdstudio_core.service_layer import profile_requests
from mdstudio_pipelines.defs.jobs import RETENTION_SCHEDULE, ProfileJob, event_retention_job
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.defs.sensors.profiling_pass import PASS_SENSOR

RETENTION_CRON = "15 4 * * *"  # daily, after the tier schedules' night passes have started


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
    cadences = {
        Tier.TIER1: ("Daily", settings.tier1_profiling_cron),
        Tier.TIER2: ("Weekly", settings.tier2_profiling_cron),
    }
    return [tier_schedule(tier, cadence, cron, job) for tier, (cadence, cron) in cadences.items()]


def tier_schedule(tier: Tier, cadence: str, cron: str, job: ProfileJob) -> dg.ScheduleDefinition:
    """`<tier>_profiling_schedule`: queues a pass over the tier's entities at each tick."""
    name = f"{tier.value}_profiling_schedule"

    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{cadence} profile of every active bound {tier.value} entity (cost guards "
        f"apply), planned by {PASS_SENSOR}; MDSTUDIO_{tier.value.upper()}_PROFILING_CRON moves it.",
    )
    def profiling_schedule(
        context: dg.ScheduleEvaluationContext, catalog: CatalogResource
    ) -> dg.SkipReason:
        return queue_pass(name, context, catalog, tier)

    return profiling_schedule


@dg.schedule(
    name=RETENTION_SCHEDULE,
    cron_schedule=RETENTION_CRON,
    job=event_retention_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: archive the outbox's events older than MDSTUDIO_EVENT_RETENTION_DAYS to "
    "MDSTUDIO_EVENT_ARCHIVE_DIR (skipped while it is unset: every event is kept).",
)
def event_retention(
    context: dg.ScheduleEvaluationContext, catalog: CatalogResource
) -> dg.RunRequest | dg.SkipReason:
    if catalog.settings.event_retention_days is None:
        return dg.SkipReason("MDSTUDIO_EVENT_RETENTION_DAYS is unset: every event is kept")
    slot = (context.scheduled_execution_time or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=f"{RETENTION_SCHEDULE}:{slot}")
