"""Assets: the governed entity (observed from the catalog's events) and its quality profile, and
the spec of each bound warehouse table (materialized by `profile_tables_job`, see `jobs`)."""

import re
from collections.abc import Iterable

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_core.domain.lineage import TableNode
from mdstudio_core.domain.model import Trigger
from mdstudio_core.service_layer.profiling import ProfileTarget, run_profiles
from mdstudio_pipelines.defs.checks import check_result
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.lib.asset_keys import (
    CATALOG_ENTITY,
    ENTITY_PROFILE,
    QUALITY_CHECK,
    dialect,
    table_key,
)
from mdstudio_pipelines.lib.metadata import profile_metadata
from mdstudio_pipelines.lib.partitions import (
    CATALOG_ENTITIES,
    daily_partitions,
    split_partition_key,
)

RULES = ("nullable", "unique", "pattern", "allowed_values", "min", "max")

catalog_entity = dg.AssetSpec(
    key=CATALOG_ENTITY,
    partitions_def=CATALOG_ENTITIES,
    group_name="mdstudio",
    description=(
        "A governed catalog entity. Its observations are the approval events of the "
        "mdstudio outbox (submitted changes, approvals, rejections), recorded by approval_sensor."
    ),
    kinds={"mdstudio"},
)


@dg.asset(
    key=ENTITY_PROFILE,
    partitions_def=CATALOG_ENTITIES,
    deps=[catalog_entity],
    group_name="mdstudio",
    kinds={"sql"},
    check_specs=[
        dg.AssetCheckSpec(
            QUALITY_CHECK,
            asset=ENTITY_PROFILE,
            partitions_def=CATALOG_ENTITIES,
            description="tier1 below its minimum fails with ERROR severity, tier2 below its "
            "minimum with WARN, tier3 informs (MDSTUDIO_TIER1_MIN_SCORE=80, "
            "MDSTUDIO_TIER2_MIN_SCORE=70 by default)",
        )
    ],
    description=(
        "Data-quality profile of the warehouse columns an entity is bound to: completeness, "
        "uniqueness and validity, weighted into a 0-100 quality score. Approval-driven and "
        "scheduled profiles run as profile_tables_job (one scan per table); materializing a "
        "partition here profiles one entity on demand."
    ),
)
def entity_profile(
    context: dg.AssetExecutionContext, catalog: CatalogResource
) -> dg.MaterializeResult:
    tenant_id, key = split_partition_key(context.partition_key)
    outcome = run_profiles(
        catalog.uow(),
        catalog.settings,
        tenant_id,
        [ProfileTarget(key, Trigger.MANUAL)],  # a person asked, from the UI
        run_id=context.run.run_id,
    )
    if key in outcome.unbound:
        raise dg.Failure(f"NO_BINDING: {key}: {outcome.unbound[key]}", allow_retries=False)
    if key in outcome.failed:
        raise dg.Failure(f"{key} could not be profiled: {outcome.failed[key]}", allow_retries=False)
    [profile] = outcome.profiles
    return dg.MaterializeResult(
        metadata=profile_metadata(profile),
        check_results=[check_result(QUALITY_CHECK, profile.verdict)],
    )


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
