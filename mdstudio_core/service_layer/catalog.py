"""Read side of the catalog: live entities and the event stream of a tenant."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from mdstudio_core.domain.errors import InvalidInput, NotFound
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.model import EntityType, Identity, Tier
from mdstudio_core.service_layer.unit_of_work import UnitOfWork


def list_entities(
    engine: Engine,
    identity: Identity,
    entity_type: EntityType = EntityType.GLOBAL_METADATA,
    *,
    tier: Tier | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The tenant's live entities of one type, by canonical key."""
    check_page(limit, offset, "offset")
    with UnitOfWork(engine) as uow:
        return uow.entities.list(
            entity_type, identity.tenant_id, tier=tier, status=status, limit=limit, offset=offset
        )


def get_entity(
    engine: Engine,
    identity: Identity,
    key: str,
    entity_type: EntityType = EntityType.GLOBAL_METADATA,
) -> dict[str, Any]:
    with UnitOfWork(engine) as uow:
        entity = uow.entities.get(entity_type, identity.tenant_id, key)
    if entity is None:
        raise NotFound(f"{entity_type.value} {key} not found")
    return entity


def list_events(
    engine: Engine,
    identity: Identity,
    *,
    after: int = 0,
    limit: int = 100,
    entity_key: str | None = None,
) -> list[Event]:
    """The tenant's events after `after`, oldest first: page on with the last id returned."""
    check_page(limit, after, "after")
    with UnitOfWork(engine) as uow:
        return uow.events.list(
            after=after, limit=limit, tenant_id=identity.tenant_id, entity_key=entity_key
        )


def check_page(limit: int, start: int, start_field: str) -> None:
    """Bound every listing: a page holds 1 to 1000 rows and starts at a non-negative place."""
    if not 1 <= limit <= 1000:
        raise InvalidInput("must be between 1 and 1000", field="limit")
    if start < 0:
        raise InvalidInput("must not be negative", field=start_field)
