"""The sensors, one module each: `approvals` (the outbox becomes observations and profiling
runs), `profiling_pass` (the tier schedules' passes, a page per tick), `notifications` (webhook
deliveries) and `deadlines` (overdue approval requests)."""

from collections.abc import Callable
from typing import Any

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.lib.asset_keys import AssetGraph

# One tick of a sensor that plans profiling runs against the graph the location was built from.
PlanningTick = Callable[
    [dg.SensorEvaluationContext, CatalogResource, AssetGraph], dg.SensorResult | dg.SkipReason
]


def running_sensor(
    name: str, interval_seconds: int, description: str, job: Any = None
) -> Callable[[Callable[..., Any]], dg.SensorDefinition]:
    """`@dg.sensor` as every mdstudio sensor is declared: running from the start, so a fresh
    deployment needs no switch flipped in the UI."""
    return dg.sensor(
        name=name,
        job=job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
        description=description,
    )


def planning_sensor(
    name: str, description: str, settings: Settings, job: Any, graph: AssetGraph, tick: PlanningTick
) -> dg.SensorDefinition:
    """A sensor requesting runs of `job`, ticking every `MDSTUDIO_SENSOR_INTERVAL_SECONDS`."""

    @running_sensor(name, settings.sensor_interval_seconds, description, job)
    def planning(
        context: dg.SensorEvaluationContext, catalog: CatalogResource
    ) -> dg.SensorResult | dg.SkipReason:
        return tick(context, catalog, graph)

    return planning
