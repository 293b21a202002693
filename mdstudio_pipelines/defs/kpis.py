"""KPI assets: one per active KPI, depending on the table assets of its inputs (column lineage
included), with its `kpi_inputs_quality` check. Profiling runs and `approval_sensor` report a
KPI's new trust (`kpi_events`); materializing one here recomputes it from the store."""

import uuid
from collections.abc import Iterator

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_core.domain.lineage import CatalogSnapshot, KpiNode, KpiTrust
from mdstudio_core.domain.quality import CheckVerdict, quality_gate
from mdstudio_core.service_layer import lineage as lineage_service
from mdstudio_pipelines.defs.assets import owners
from mdstudio_pipelines.defs.checks import check_evaluation, check_result
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.lib.asset_keys import KPI_CHECK, kpi_key, table_key
from mdstudio_pipelines.lib.metadata import kpi_metadata


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


def kpi_verdict(settings: Settings, trust: KpiTrust) -> tuple[CheckVerdict, dict]:
    """`kpi_inputs_quality`'s verdict: the quality gate applied to the trust score, and what
    the check shows with it."""
    note = "unscored inputs: " + ", ".join(f"{i.key} ({i.unscored_reason})" for i in trust.unscored)
    verdict = quality_gate(trust.tier, trust.trust_score, note, settings.quality_thresholds)
    metadata = {
        "tier": trust.tier.value,
        "trust_score": trust.trust_score,
        "threshold": verdict.threshold,
        "weakest_input": trust.weakest_input or "",
    }
    return verdict, metadata


def kpi_events(
    settings: Settings, tenant: str, tenant_id: uuid.UUID, trust: KpiTrust
) -> list[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """A KPI's new trust as Dagster events: the KPI asset's materialization and its check."""
    key = kpi_key(tenant, trust.canonical_key)
    verdict, metadata = kpi_verdict(settings, trust)
    return [
        dg.AssetMaterialization(asset_key=key, metadata=kpi_metadata(trust, tenant_id)),
        check_evaluation(key, KPI_CHECK, None, verdict, metadata),
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
                key = kpi_key(tenant, trust.canonical_key)
                verdict, metadata = kpi_verdict(catalog.settings, trust)
                yield dg.MaterializeResult(
                    asset_key=key,
                    metadata=kpi_metadata(trust, tenant_id),
                    check_results=[check_result(KPI_CHECK, verdict, key, metadata)],
                )

    return kpi_trust
