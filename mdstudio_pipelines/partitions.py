"""Asset keys and the one partition per catalog entity (tenant + canonical key)."""

import uuid

import dagster as dg

CATALOG_ENTITIES = dg.DynamicPartitionsDefinition(name="catalog_entities")
CATALOG_ENTITY = dg.AssetKey("catalog_entity")
ENTITY_PROFILE = dg.AssetKey("entity_profile")
QUALITY_CHECK = "quality_score_threshold"
# Observations of `entity_profile` (besides the outbox's own event types on `catalog_entity`).
RUN_REQUESTED = "metadata.profile.run_requested"
PROFILE_SKIPPED = "metadata.profile.skipped"
PROFILE_FAILED = "metadata.profile.failed"


def partition_key(tenant_id: uuid.UUID | str, canonical_key: str) -> str:
    """`{tenant}:{canonical key}`. Dagster reserves `|` `,` `[` `]` and `...` in partition
    keys; a UUID and a canonical key contain none of them."""
    return f"{tenant_id}:{canonical_key}"


def split_partition_key(key: str) -> tuple[uuid.UUID, str]:
    tenant, _, canonical_key = key.partition(":")
    return uuid.UUID(tenant), canonical_key
