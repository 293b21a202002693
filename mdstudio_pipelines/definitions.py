"""The Dagster code location: one place that assembles mdstudio's assets, job, sensor,
schedules and resources. Settings come from the environment (see the README)."""

import dagster as dg

from mdstudio_pipelines.assets import catalog_entity, entity_profile
from mdstudio_pipelines.jobs import profile_tables_job
from mdstudio_pipelines.resources import CatalogResource, WarehouseResource, thresholds_from_env
from mdstudio_pipelines.schedules import tier1_profiling_schedule, tier2_profiling_schedule
from mdstudio_pipelines.sensors import approval_sensor

defs = dg.Definitions(
    assets=[catalog_entity, entity_profile],
    jobs=[profile_tables_job],
    sensors=[approval_sensor],
    schedules=[tier1_profiling_schedule, tier2_profiling_schedule],
    resources={
        "catalog": CatalogResource(database_url=dg.EnvVar("MDSTUDIO_DATABASE_URL")),
        "warehouse": WarehouseResource(),
        "thresholds": thresholds_from_env(),
    },
)
