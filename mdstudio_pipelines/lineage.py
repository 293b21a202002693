"""The catalog as Dagster's asset graph: one asset per bound warehouse table per tenant, one per
active KPI depending on the tables of its inputs, built from a `CatalogSnapshot` of the store.

Asset keys: `[<tenant>, <source>, <schema>, <table>]` and `[<tenant>, "kpi", <canonical_key>]`,
`<tenant>` being the tenant's name or, unnamed, `t_` and its whole id, last group first
(`domain.lineage.tenant_label`; one asset group per tenant). A binding without a schema reads
the source's default schema, named in the key (`public` on PostgreSQL, `main` on SQLite)."""

import functools
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import dagster as dg
from sqlalchemy.engine import make_url

from mdstudio_core.config import Settings
from mdstudio_core.domain.lineage import CatalogSnapshot, KpiNode, KpiTrust, TableNode
from mdstudio_core.domain.quality import quality_gate
from mdstudio_core.service_layer import lineage as lineage_service
from mdstudio_pipelines import reload
from mdstudio_pipelines.checks import SEVERITY
from mdstudio_pipelines.resources import CatalogResource

KPI_CHECK = "kpi_inputs_quality"
DEFAULT_SCHEMA = {"postgresql": "public", "sqlite": "main"}
RULES = ("nullable", "unique", "pattern", "allowed_values", "min", "max")


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


def owners(values: Iterable[str | None]) -> list[str]:
    """Owners as Dagster takes them: an e-mail address as it is, anything else as a team."""
    found = set()
    for value in values:
        if not value:
            continue
        if re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            found.add(value)
        else:
            found.add("team:" + re.sub(r"[^A-Za-z0-9_]", "_", value))
    return sorted(found)


def daily_partitions(node: TableNode) -> dg.DailyPartitionsDefinition:
    """A daily table's partitions: one per day (UTC) of its incremental column, from its first
    day profiled, up to today's (a pass counts the rows of the current day too)."""
    return dg.DailyPartitionsDefinition(start_date=node.first_day or "2000-01-01", end_offset=1)


def table_spec(settings: Settings, node: TableNode) -> dg.AssetSpec:
    columns: dict[str, list[tuple[str, str, list[str]]]] = {}
    for field in node.fields:
        for column in field.columns:
            rules = [f"{rule}={column[rule]}" for rule in RULES if rule in column]
            columns.setdefault(column["name"], []).append(
                (field.canonical_key, field.data_type, rules)
            )
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=bound[0][1] or "unknown",
                description="; ".join(
                    f"{key}: {', '.join(rules) or 'no rule'}" for key, _, rules in bound
                ),
                tags={"mdstudio/canonical_key": ",".join(key for key, _, _ in bound)},
            )
            for name, bound in sorted(columns.items())
        ]
    )
    kind = dialect(settings, node.source)
    return dg.AssetSpec(
        key=table_key(settings, node.tenant, node.source, node.schema, node.table),
        group_name=node.tenant,
        description=f"Warehouse table {node.label}, bound by "
        + ", ".join(f.canonical_key for f in node.fields)
        + ". Materialized by profiling it (one scan for every field bound to it)."
        + (
            " Daily-partitioned: each pass materializes the days it read, with each day's counts"
            " and scores; materializing chosen days counts them again."
            if node.daily
            else ""
        ),
        metadata={
            "mdstudio/tenant": str(node.tenant_id),
            "mdstudio/table": node.label,
            "dagster/column_schema": schema,
        },
        kinds={"table", kind} if kind else {"table"},
        owners=owners(f.owner for f in node.fields),
        tags={"mdstudio/tier": node.tier.value},
        skippable=True,
        partitions_def=daily_partitions(node) if node.daily else None,
    )


def kpi_spec(settings: Settings, node: KpiNode, snapshot: CatalogSnapshot) -> dg.AssetSpec:
    deps: dict[dg.AssetKey, list[str]] = {}
    for key in node.inputs:
        table = snapshot.table_of(node.tenant_id, key)
        if table is None:
            continue
        asset = table_key(settings, node.tenant, table.source, table.schema, table.table)
        field = next(f for f in table.fields if f.canonical_key == key)
        deps.setdefault(asset, []).extend(c["name"] for c in field.columns)
    lineage = dg.TableColumnLineage(
        deps_by_column={
            node.canonical_key: [
                dg.TableColumnDep(asset_key=asset, column_name=column)
                for asset, columns in sorted(deps.items(), key=lambda i: i[0].to_user_string())
                for column in sorted(set(columns))
            ]
        }
    )
    return dg.AssetSpec(
        key=kpi_key(node.tenant, node.canonical_key),
        deps=sorted(deps, key=lambda k: k.to_user_string()),
        group_name=node.tenant,
        description=f"KPI {node.name}: trusted as far as its weakest input "
        f"({', '.join(node.inputs) or 'no inputs'}). Materialized with each input's profile.",
        metadata={
            "mdstudio/tenant": str(node.tenant_id),
            "mdstudio/canonical_key": node.canonical_key,
            "dagster/column_lineage": lineage,
        },
        kinds={"kpi"},
        owners=owners([node.owner]),
        tags={"mdstudio/tier": node.tier.value},
        skippable=True,
    )


def kpi_check_spec(node: KpiNode) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        KPI_CHECK,
        asset=kpi_key(node.tenant, node.canonical_key),
        description="The KPI's trust (its weakest input's quality score, stale inputs "
        "discounted) against its tier's minimum: tier1 fails with ERROR, tier2 with WARN.",
    )


def kpi_metadata(trust: KpiTrust, tenant_id: uuid.UUID) -> dict:
    return {
        "trust_score": dg.MetadataValue.float(trust.trust_score)
        if trust.trust_score is not None
        else dg.MetadataValue.null(),
        "weakest_input": trust.weakest_input or "",
        "inputs": dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "key": i.key,
                        "score": i.quality_score,
                        "profiled_at": i.profiled_at.isoformat() if i.profiled_at else None,
                        "stale": i.stale,
                    }
                )
                for i in trust.inputs
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("key", "string"),
                    dg.TableColumn("score", "float"),
                    dg.TableColumn("profiled_at", "string"),
                    dg.TableColumn("stale", "bool"),
                ]
            ),
        ),
        "unscored_inputs": ", ".join(f"{i.key} ({i.unscored_reason})" for i in trust.unscored),
        "tier": trust.tier.value,
        "mdstudio/tenant": str(tenant_id),
    }


def kpi_check(settings: Settings, trust: KpiTrust) -> tuple[bool, dg.AssetCheckSeverity, str, dict]:
    """`kpi_inputs_quality`'s verdict: the quality gate applied to the trust score."""
    note = "unscored inputs: " + ", ".join(f"{i.key} ({i.unscored_reason})" for i in trust.unscored)
    verdict = quality_gate(trust.tier, trust.trust_score, note, settings.quality_thresholds)
    metadata = {
        "tier": trust.tier.value,
        "trust_score": trust.trust_score,
        "threshold": verdict.threshold,
        "weakest_input": trust.weakest_input or "",
    }
    return verdict.passed, SEVERITY[verdict.severity], verdict.description, metadata


def kpi_events(
    settings: Settings, tenant: str, tenant_id: uuid.UUID, trust: KpiTrust
) -> list[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """A KPI's new trust as Dagster events: the KPI asset's materialization and its check."""
    key = kpi_key(tenant, trust.canonical_key)
    passed, severity, description, metadata = kpi_check(settings, trust)
    return [
        dg.AssetMaterialization(asset_key=key, metadata=kpi_metadata(trust, tenant_id)),
        dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=KPI_CHECK,
            passed=passed,
            severity=severity,
            description=description,
            metadata=metadata,
        ),
    ]


def build_kpi_assets(settings: Settings, snapshot: CatalogSnapshot) -> dg.AssetsDefinition | None:
    """One asset per active KPI (None when there is none). Profiling runs materialize them
    when an input's profile lands; materializing one here recomputes its trust from the store."""
    if not snapshot.kpis:
        return None
    nodes = {kpi_key(n.tenant, n.canonical_key): n for n in snapshot.kpis}

    @dg.multi_asset(
        name="kpi_trust",
        specs=[kpi_spec(settings, node, snapshot) for node in snapshot.kpis],
        check_specs=[kpi_check_spec(node) for node in snapshot.kpis],
        can_subset=True,
        description="Each KPI's trust from its inputs' latest profiles.",
    )
    def kpi_trust(
        context: dg.AssetExecutionContext, catalog: CatalogResource
    ) -> Iterator[dg.MaterializeResult]:
        by_tenant: dict[uuid.UUID, list[KpiNode]] = {}
        for key in context.selected_asset_keys:
            node = nodes[key]
            by_tenant.setdefault(node.tenant_id, []).append(node)
        for tenant_id, selected in by_tenant.items():
            trusts = lineage_service.refresh_kpis(
                catalog.uow(), catalog.settings, tenant_id, [n.canonical_key for n in selected]
            )
            tenant = selected[0].tenant
            for trust in trusts:
                passed, severity, description, metadata = kpi_check(catalog.settings, trust)
                yield dg.MaterializeResult(
                    asset_key=kpi_key(tenant, trust.canonical_key),
                    metadata=kpi_metadata(trust, tenant_id),
                    check_results=[
                        dg.AssetCheckResult(
                            check_name=KPI_CHECK,
                            asset_key=kpi_key(tenant, trust.canonical_key),
                            passed=passed,
                            severity=severity,
                            description=description,
                            metadata=metadata,
                        )
                    ],
                )

    return kpi_trust
