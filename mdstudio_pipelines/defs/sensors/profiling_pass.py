"""`profiling_pass_sensor`: plans the tier schedules' passes (`schedules.py` records them),
`MDSTUDIO_SCHEDULE_TABLES_PER_TICK` tables per tick, its cursor saying how far it got, and
requests their runs, keyed by the schedule's slot and the run's first table."""

import datetime as dt

import dagster as dg
import orjson

from mdstudio_core.config import Settings
from mdstudio_core.domain.model import PassProgress
from mdstudio_core.service_layer import profile_requests
from mdstudio_pipelines.defs.jobs import ProfileJob
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.defs.run_planning import guarded_plan, pack_runs, skip_observation
from mdstudio_pipelines.defs.sensors import planning_sensor
from mdstudio_pipelines.lib.asset_keys import AssetGraph
from mdstudio_pipelines.lib.dagster_internals import store_observations

PASS_SENSOR = "profiling_pass_sensor"


def build_profiling_pass_sensor(
    settings: Settings, job: ProfileJob, graph: AssetGraph
) -> dg.SensorDefinition:
    """`profiling_pass_sensor`, ticking every `MDSTUDIO_SENSOR_INTERVAL_SECONDS`."""

    return planning_sensor(
        PASS_SENSOR,
        "Plans the tier schedules' passes, MDSTUDIO_SCHEDULE_TABLES_PER_TICK tables per tick, "
        "and requests their runs.",
        settings,
        job,
        graph,
        plan_pass_page,
    )


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
    profile_plan = guarded_plan(
        context, catalog, page.candidates, [c.entity for c in page.candidates], now
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
