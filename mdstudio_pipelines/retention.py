"""`event_retention`: daily, when `MDSTUDIO_EVENT_RETENTION_DAYS` is set, a run of
`event_retention_job` archives the outbox's events older than that to
`MDSTUDIO_EVENT_ARCHIVE_DIR` (Parquet, one file per month) and removes them, as `mdstudio
events archive` does: never an event a consumer has not handled. The archive runs in a run, not
in the schedule's tick: a large backlog takes minutes, and a tick has 60 s."""

import datetime as dt

import dagster as dg

from mdstudio_core.service_layer import retention
from mdstudio_pipelines.resources import CatalogResource

SCHEDULE = "event_retention"
JOB = "event_retention_job"
CRON = "15 4 * * *"  # daily, after the tier schedules' night passes have started


@dg.op(name="archive_old_events")
def archive_old_events(context: dg.OpExecutionContext, catalog: CatalogResource) -> None:
    """Archive and remove the events older than MDSTUDIO_EVENT_RETENTION_DAYS."""
    settings = catalog.settings
    if settings.event_retention_days is None or settings.event_archive_dir is None:
        context.log.info("MDSTUDIO_EVENT_RETENTION_DAYS is unset: every event is kept")
        return
    now = dt.datetime.now(dt.UTC)
    before = now - dt.timedelta(days=settings.event_retention_days)
    report = retention.archive(catalog.uow, before, settings.event_archive_dir, SCHEDULE, now)
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


@dg.job(name=JOB, tags={"mdstudio/kind": "retention"})
def event_retention_job() -> None:
    archive_old_events()


@dg.schedule(
    name=SCHEDULE,
    cron_schedule=CRON,
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
    return dg.RunRequest(run_key=f"{SCHEDULE}:{slot}")
