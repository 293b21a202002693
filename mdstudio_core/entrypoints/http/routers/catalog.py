"""`/metadata`, `/kpis` and `/profiles`: the live catalog and the profiles of its fields."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from mdstudio_core.domain.model import (
    CANONICAL_KEY_PATTERN,
    EntityStatus,
    EntityType,
    Identity,
    Tier,
)
from mdstudio_core.entrypoints.http.auth import Caller, Uow
from mdstudio_core.entrypoints.http.problems import AUTHED, documented
from mdstudio_core.entrypoints.http.schemas import (
    CanonicalKey,
    JsonResponse,
    KpiOut,
    KpiPage,
    Limit,
    MetadataOut,
    MetadataPage,
    Offset,
    ProfileHistory,
    page,
)
from mdstudio_core.service_layer import catalog
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

router = APIRouter(tags=["catalog"], default_response_class=JsonResponse)


def _entities(
    uow: UnitOfWork,
    identity: Identity,
    entity_type: EntityType,
    tier: Tier | None,
    status: EntityStatus | None,
    limit: int,
    offset: int,
) -> Response:
    found = catalog.list_entities(
        uow, identity, entity_type, tier=tier, status=status, limit=limit, offset=offset
    )
    return JsonResponse(page([entity.as_dict() for entity in found], limit, offset))


@router.get("/metadata", responses=documented(MetadataPage, *AUTHED))
def list_metadata(
    identity: Caller,
    uow: Uow,
    tier: Tier | None = None,
    status: EntityStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Live metadata fields of the tenant, by canonical key."""
    return _entities(uow, identity, EntityType.GLOBAL_METADATA, tier, status, limit, offset)


@router.get("/metadata/{canonical_key}", responses=documented(MetadataOut, *AUTHED, 404))
def get_metadata(canonical_key: CanonicalKey, identity: Caller, uow: Uow) -> Response:
    """One live metadata field."""
    return JsonResponse(catalog.get_entity(uow, identity, canonical_key).as_dict())


@router.get("/kpis", responses=documented(KpiPage, *AUTHED))
def list_kpis(
    identity: Caller,
    uow: Uow,
    tier: Tier | None = None,
    status: EntityStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Live KPIs of the tenant, by canonical key."""
    return _entities(uow, identity, EntityType.KPI, tier, status, limit, offset)


@router.get("/kpis/{canonical_key}", responses=documented(KpiOut, *AUTHED, 404))
def get_kpi(canonical_key: CanonicalKey, identity: Caller, uow: Uow) -> Response:
    """One live KPI."""
    return JsonResponse(catalog.get_entity(uow, identity, canonical_key, EntityType.KPI).as_dict())


@router.get("/profiles", responses=documented(ProfileHistory, *AUTHED, 404))
def list_profiles(
    identity: Caller,
    uow: Uow,
    entity: Annotated[str, Query(pattern=CANONICAL_KEY_PATTERN, max_length=200)],
    limit: Limit = 20,
) -> Response:
    """Profiles of one metadata field, newest first."""
    return JsonResponse({"items": catalog.profile_history(uow, identity, entity, limit)})
