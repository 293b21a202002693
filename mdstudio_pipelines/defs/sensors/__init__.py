"""The sensors, one module each: `approvals` (the outbox becomes observations and profiling
runs), `profiling_pass` (the tier schedules' passes, a page per tick), `notifications` (webhook
deliveries) and `deadlines` (overdue approval requests)."""

from collections.abc import Callable
from typing import Any

import dagster as dg


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
