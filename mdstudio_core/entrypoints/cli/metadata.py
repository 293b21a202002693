"""`mdstudio metadata`: the live catalog."""

from __future__ import annotations

import click

from mdstudio_core.domain.model import CATALOG_ENTITY_TYPES, EntityStatus, EntityType, Tier
from mdstudio_core.entrypoints.cli.output import emit, print_record, print_table
from mdstudio_core.entrypoints.cli.plumbing import cli, common_options, identity, runtime
from mdstudio_core.service_layer import catalog


@cli.group("metadata")
def metadata_group() -> None:
    """The live catalog."""


ENTITY_TYPE_OPTION = click.option(
    "--entity-type",
    type=click.Choice([t.value for t in CATALOG_ENTITY_TYPES]),
    default=EntityType.GLOBAL_METADATA.value,
    show_default=True,
)


@metadata_group.command("list")
@ENTITY_TYPE_OPTION
@click.option("--tier", type=click.Choice([t.value for t in Tier]))
@click.option("--status", type=click.Choice([s.value for s in EntityStatus]))
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@common_options
def metadata_list(
    entity_type: str, tier: str | None, status: str | None, limit: int, offset: int
) -> None:
    """Live entities of the tenant, by canonical key."""
    entities = [
        entity.as_dict()
        for entity in catalog.list_entities(
            runtime().uow(),
            identity(),
            EntityType(entity_type),
            tier=Tier(tier) if tier else None,
            status=EntityStatus(status) if status else None,
            limit=limit,
            offset=offset,
        )
    ]
    columns = ("canonical_key", "tier", "status", "version", "owner", "updated_at", "updated_by")
    emit(entities, lambda: print_table(entities, columns))


@metadata_group.command("show")
@click.argument("canonical_key")
@ENTITY_TYPE_OPTION
@common_options
def metadata_show(canonical_key: str, entity_type: str) -> None:
    """One live entity in full."""
    entity = catalog.get_entity(
        runtime().uow(), identity(), canonical_key, EntityType(entity_type)
    ).as_dict()
    emit(entity, lambda: print_record(entity))
