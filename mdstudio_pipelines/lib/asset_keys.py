"""Asset keys and check names, and the graph a code location was built from.

Keys: `catalog_entity` and `entity_profile` (partitioned by entity), `[<tenant>, <source>,
<schema>, <table>]` per bound table and `[<tenant>, "kpi", <canonical_key>]` per KPI, `<tenant>`
being the tenant's name or, unnamed, `t_` and its whole id, last group first
(`domain.lineage.tenant_label`; one asset group per tenant). A binding without a schema reads
the source's default schema, named in the key (`public` on PostgreSQL, `main` on SQLite)."""

import functools
import uuid
from dataclasses import dataclass

import dagster as dg
from sqlalchemy.engine import make_url

from mdstudio_core.config import Settings
from mdstudio_core.domain.lineage import CatalogSnapshot
from mdstudio_pipelines.lib import reload

CATALOG_ENTITY = dg.AssetKey("catalog_entity")
ENTITY_PROFILE = dg.AssetKey("entity_profile")
QUALITY_CHECK = "quality_score_threshold"
KPI_CHECK = "kpi_inputs_quality"
# Observations of `entity_profile` (besides the outbox's own event types on `catalog_entity`).
RUN_REQUESTED = "metadata.profile.run_requested"
PROFILE_SKIPPED = "metadata.profile.skipped"
DEFAULT_SCHEMA = {"postgresql": "public", "sqlite": "main"}


def dialect(settings: Settings, source: str) -> str | None:
    """The warehouse dialect of a configured source (None when it is not configured)."""
    url = settings.source_url(source)
    if not url:
        return None
    try:
        return make_url(url).get_backend_name()
    except Exception:  # a malformed source URL fails its own profiles, not the graph
        return None


def table_key(
    settings: Settings, tenant: str, source: str, schema: str | None, table: str
) -> dg.AssetKey:
    default = DEFAULT_SCHEMA.get(dialect(settings, source) or "", "default")
    return dg.AssetKey([tenant, source, schema or default, table])


def table_key_of(settings: Settings, tenant: str, label: str) -> dg.AssetKey:
    """The key of a table named as profiling names it (`source.schema.table` or
    `source.table`)."""
    parts = label.split(".")
    source, schema, table = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    return table_key(settings, tenant, source, schema, table)


def kpi_key(tenant: str, canonical_key: str) -> dg.AssetKey:
    return dg.AssetKey([tenant, "kpi", canonical_key])


@dataclass(frozen=True)
class AssetGraph:
    """The graph a code location was built from, as the sensor and the schedules see it:
    which tables have an asset (runs select them; a table bound since is profiled all the
    same, and reported on its key before the graph shows it)."""

    settings: Settings
    snapshot: CatalogSnapshot

    @functools.cached_property
    def fingerprint(self) -> str:
        """The catalog this location was built from (`reload.fingerprint`)."""
        return reload.fingerprint(self.snapshot.to_json())

    @functools.cached_property
    def table_keys(self) -> frozenset[dg.AssetKey]:
        """The table assets a profiling run selects: a daily table's asset is partitioned
        (`daily_partitions`) and has its own op; a run reports its days instead."""
        return frozenset(
            table_key(self.settings, n.tenant, n.source, n.schema, n.table)
            for n in self.snapshot.tables
            if not n.daily
        )

    def known_table(self, tenant_id: uuid.UUID, label: str) -> dg.AssetKey | None:
        tenant = self.snapshot.tenants.get(tenant_id)
        if tenant is None:
            return None
        key = table_key_of(self.settings, tenant, label)
        return key if key in self.table_keys else None
