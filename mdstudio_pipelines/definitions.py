"""The Dagster code location: mdstudio's assets, jobs, sensors, schedules and resource, built
from the catalog when the location loads. The one place that builds `Definitions`: what it
assembles is in `defs/` by role, what those are built with in `lib/`.

The code server reads the store once (`lineage.load_snapshot`) and builds one asset per bound
table per tenant and one per active KPI; the snapshot travels to run workers as reconstruction
metadata, so a run worker rebuilds exactly the same graph without reading the store again.
The settings are read once, here, as the CLI reads them: a malformed `MDSTUDIO_*` variable
fails the code location with a message naming it."""

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_core.domain.lineage import CatalogSnapshot
from mdstudio_core.entrypoints.logs import scrub_log_records
from mdstudio_core.service_layer import lineage
from mdstudio_pipelines.defs.assets import catalog_entity, entity_profile
from mdstudio_pipelines.defs.jobs import build_profile_job, event_retention_job
from mdstudio_pipelines.defs.kpis import build_kpi_assets
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.defs.schedules import build_profiling_schedules, event_retention
from mdstudio_pipelines.defs.sensors.approvals import build_approval_sensor
from mdstudio_pipelines.defs.sensors.deadlines import build_approval_deadline_sensor
from mdstudio_pipelines.defs.sensors.notifications import build_notification_sensor
from mdstudio_pipelines.defs.sensors.profiling_pass import build_profiling_pass_sensor
from mdstudio_pipelines.lib.asset_keys import AssetGraph
from mdstudio_pipelines.lib.dagster_internals import (
    keep_for_reconstruction,
    reconstruction_metadata,
)

SNAPSHOT_KEY = "mdstudio/catalog_snapshot"


def build_definitions(settings: Settings, snapshot: CatalogSnapshot) -> dg.Definitions:
    """Everything the code location holds, for one snapshot of the catalog."""
    graph = AssetGraph(settings, snapshot)
    table_assets, job = build_profile_job(snapshot, settings)
    kpi_assets = build_kpi_assets(settings, snapshot)
    return dg.Definitions(
        assets=[
            catalog_entity,
            entity_profile,
            *table_assets,
            *([kpi_assets] if kpi_assets is not None else []),
        ],
        jobs=[job, event_retention_job],
        sensors=[
            build_approval_sensor(settings, job, graph),
            build_notification_sensor(settings),
            build_approval_deadline_sensor(settings),
            build_profiling_pass_sensor(settings, job, graph),
        ],
        schedules=[*build_profiling_schedules(settings, job), event_retention],
        resources={"catalog": CatalogResource()},
    )


def current_snapshot(catalog: CatalogResource) -> CatalogSnapshot:
    """The code server's snapshot in a run worker; the store's when the location loads."""
    stored = reconstruction_metadata(SNAPSHOT_KEY)
    if stored is not None:
        return CatalogSnapshot.from_json(stored)
    snapshot = lineage.load_snapshot(catalog.uow())
    keep_for_reconstruction(SNAPSHOT_KEY, snapshot.to_json())
    return snapshot


@dg.definitions
def defs() -> dg.Definitions:
    catalog = CatalogResource()
    scrub_log_records(catalog.settings)  # the code server's and each run worker's logs
    return build_definitions(catalog.settings, current_snapshot(catalog))
