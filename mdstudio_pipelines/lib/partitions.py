"""The one partition per catalog entity (tenant + canonical key), and a daily table's days."""

import uuid

import dagster as dg

from mdstudio_core.domain.lineage import TableNode

CATALOG_ENTITIES = dg.DynamicPartitionsDefinition(name="catalog_entities")


def partition_key(tenant_id: uuid.UUID | str, canonical_key: str) -> str:
    """`{tenant}:{canonical key}`. Dagster reserves `|` `,` `[` `]` and `...` in partition
    keys; a UUID and a canonical key contain none of them."""
    return f"{tenant_id}:{canonical_key}"


def split_partition_key(key: str) -> tuple[uuid.UUID, str]:
    tenant, _, canonical_key = key.partition(":")
    return uuid.UUID(tenant), canonical_key


def daily_partitions(node: TableNode) -> dg.DailyPartitionsDefinition:
    """A daily table's partitions: one per day (UTC) of its incremental column, from its first
    day profiled, up to today's (a pass counts the rows of the current day too)."""
    return dg.DailyPartitionsDefinition(start_date=node.first_day or "2000-01-01", end_offset=1)
