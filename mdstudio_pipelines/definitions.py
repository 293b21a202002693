"""The Dagster code location: one place that assembles mdstudio's assets, job, sensor,
schedules and resource. The settings are read once, here, as the CLI reads them: a malformed
`MDSTUDIO_*` variable fails the code location with a message naming it."""

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_pipelines.assets import catalog_entity, entity_profile
from mdstudio_pipelines.jobs import profile_tables_job
from mdstudio_pipelines.notifications import build_notification_sensor
from mdstudio_pipelines.resources import CatalogResource
from mdstudio_pipelines.schedules import build_profiling_schedules
from mdstudio_pipelines.sensors import build_approval_sensor

settings = Settings.from_env()

defs = dg.Definitions(
    assets=[catalog_entity, entity_profile],
    jobs=[profile_tables_job],
    sensors=[build_approval_sensor(settings), build_notification_sensor(settings)],
    schedules=build_profiling_schedules(settings),
    resources={"catalog": CatalogResource()},
)
