"""Read side of the catalog: live entities, their profiles and the event stream of a tenant."""

from __future__ import annotations

import datetime as dt

from mdstudio_core.domain.errors import InvalidInput, NotFound
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.incremental import ProfileDay
from mdstudio_core.domain.model import EntityStatus, EntityType, Identity, LiveEntity, Tier
from mdstudio_core.domain.quality import StoredProfile
from mdstudio_core.domain.retention import check_resume
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

# A page holds 1 to MAX_PAGE_SIZE rows; positions (offsets, event ids) fit a signed 64-bit
# integer, the widest both backends store, so a huge number is invalid input, not a crash.
MAX_PAGE_SIZE = 1000
MAX_POSITION = 2**63 - 1


def list_entities(
    uow: UnitOfWork,
    identity: Identity,
    entity_type: EntityType = EntityType.GLOBAL_METADATA,
    *,
    tier: Tier | None = None,
    status: EntityStatus | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[LiveEntity]:
    """The tenant's live entities of one type, by canonical key."""
    check_page(limit, offset, "offset")
    with uow:
        return uow.entities.list(
            entity_type, identity.tenant_id, tier=tier, status=status, limit=limit, offset=offset
        )


def get_entity(
    uow: UnitOfWork,
    identity: Identity,
    key: str,
    entity_type: EntityType = EntityType.GLOBAL_METADATA,
) -> LiveEntity:
    with uow:
        entity = uow.entities.get(entity_type, identity.tenant_id, key)
    if entity is None:
        raise NotFound(f"{entity_type.value} {key} not found")
    return entity


def list_events(
    uow: UnitOfWork,
    identity: Identity,
    *,
    after: int = 0,
    limit: int = 100,
    entity_key: str | None = None,
) -> list[Event]:
    """The tenant's events after `after`, oldest first: page on with the last id returned.
    Events after `after` archived already: `Gone`, with the earliest id kept."""
    check_page(limit, after, "after")
    with uow:
        check_resume(after, uow.archives.horizon())
        return uow.events.list(
            after=after, limit=limit, tenant_id=identity.tenant_id, entity_key=entity_key
        )


def profile_history(
    uow: UnitOfWork, identity: Identity, canonical_key: str, limit: int = 20
) -> list[StoredProfile]:
    """The profiles of one metadata field of the tenant, newest first.

    A field the tenant does not have is "not found" (also when another tenant has it); a field
    never profiled has an empty history.
    """
    check_page(limit, 0, "offset")
    with uow:
        if uow.entities.get(EntityType.GLOBAL_METADATA, identity.tenant_id, canonical_key) is None:
            raise NotFound(f"{EntityType.GLOBAL_METADATA.value} {canonical_key} not found")
        return uow.profiles.history(identity.tenant_id, canonical_key, limit)


def profile_days(
    uow: UnitOfWork,
    identity: Identity,
    canonical_key: str,
    first: dt.date | None = None,
    last: dt.date | None = None,
) -> list[ProfileDay]:
    """The days of a field bound with `incremental.partition: day`, from `first` to `last`
    (both included), oldest first: each day's row count, score and column counts. A field the
    tenant does not have is "not found"; one never profiled by day has no days."""
    if first is not None and last is not None and first > last:
        raise InvalidInput(f"{first.isoformat()} is after --to {last.isoformat()}", field="from")
    with uow:
        if uow.entities.get(EntityType.GLOBAL_METADATA, identity.tenant_id, canonical_key) is None:
            raise NotFound(f"{EntityType.GLOBAL_METADATA.value} {canonical_key} not found")
        return uow.profile_days.list(identity.tenant_id, canonical_key, first, last)


def check_page(limit: int, start: int, start_field: str) -> None:
    """Bound every listing: a page holds 1 to 1000 rows and starts at a non-negative place
    that the store can represent."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"must be between 1 and {MAX_PAGE_SIZE}", field="limit")
    if start < 0:
        raise InvalidInput("must not be negative", field=start_field)
    if start > MAX_POSITION:
        raise InvalidInput("is too large", field=start_field)
