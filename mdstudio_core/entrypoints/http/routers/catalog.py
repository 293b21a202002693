"""`/metadata`, `/kpis`, `/profiles` and `/lineage`: the live catalog, the profiles of its
fields, and how KPIs depend on them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mdstudio_core.domain.model import (
    CANONICAL_KEY_PATTERN,
    EntityStatus,
    EntityType,
    Tier,
)
from mdstudio_core.entrypoints.http.auth import Caller, Context, call
from mdstudio_core.entrypoints.http.problems import AUTHED, documented
from mdstudio_core.entrypoints.http.schemas import (
    CanonicalKey,
    FieldLineageOut,
    JsonResponse,
    KpiOut,
    KpiPage,
    KpiTrustOut,
    Limit,
    MetadataOut,
    MetadataPage,
    Offset,
    ProfileHistory,
    page,
)
from mdstudio_core.service_layer import catalog, lineage

router = APIRouter(tags=["catalog"], default_response_class=JsonResponse)


async def _entities(
    caller: Context,
    entity_type: EntityType,
    tier: Tier | None,
    status: EntityStatus | None,
    limit: int,
    offset: int,
) -> Response:
    found = await call(
        catalog.list_entities,
        caller,
        entity_type,
        tier=tier,
        status=status,
        limit=limit,
        offset=offset,
    )
    return JsonResponse(page([entity.as_dict() for entity in found], limit, offset))


@router.get("/metadata", responses=documented(MetadataPage, *AUTHED))
async def list_metadata(
    caller: Caller,
    tier: Tier | None = None,
    status: EntityStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Live metadata fields of the tenant, by canonical key."""
    return await _entities(caller, EntityType.GLOBAL_METADATA, tier, status, limit, offset)


@router.get("/metadata/{canonical_key}", responses=documented(MetadataOut, *AUTHED, 404))
async def get_metadata(canonical_key: CanonicalKey, caller: Caller) -> Response:
    """One live metadata field."""
    return JsonResponse((await call(catalog.get_entity, caller, canonical_key)).as_dict())


@router.get("/kpis", responses=documented(KpiPage, *AUTHED))
async def list_kpis(
    caller: Caller,
    tier: Tier | None = None,
    status: EntityStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Live KPIs of the tenant, by canonical key."""
    return await _entities(caller, EntityType.KPI, tier, status, limit, offset)


@router.get("/kpis/{canonical_key}", responses=documented(KpiOut, *AUTHED, 404))
async def get_kpi(canonical_key: CanonicalKey, caller: Caller) -> Response:
    """One live KPI."""
    kpi = await call(catalog.get_entity, caller, canonical_key, EntityType.KPI)
    return JsonResponse(kpi.as_dict())


@router.get("/kpis/{canonical_key}/trust", responses=documented(KpiTrustOut, *AUTHED, 404))
async def get_kpi_trust(canonical_key: CanonicalKey, request: Request, caller: Caller) -> Response:
    """A KPI's trust now: the lowest quality score among its inputs (stale ones discounted),
    its weakest input, and each input's score, profile time and staleness."""
    settings = request.app.state.settings
    return JsonResponse(await call(lineage.kpi_trust, caller, settings, canonical_key))


@router.get(
    "/lineage/{canonical_key}",
    responses=documented(FieldLineageOut | KpiTrustOut, *AUTHED, 404),
)
async def get_lineage(canonical_key: CanonicalKey, request: Request, caller: Caller) -> Response:
    """A field: its table, columns and the KPIs depending on it with their trust. A KPI: its
    inputs with their scores (as `GET /kpis/{key}/trust`)."""
    settings = request.app.state.settings
    return JsonResponse(await call(lineage.lineage, caller, settings, canonical_key))


@router.get("/profiles", responses=documented(ProfileHistory, *AUTHED, 404))
async def list_profiles(
    caller: Caller,
    entity: Annotated[str, Query(pattern=CANONICAL_KEY_PATTERN, max_length=200)],
    limit: Limit = 20,
) -> Response:
    """Profiles of one metadata field, newest first."""
    return JsonResponse({"items": await call(catalog.profile_history, caller, entity, limit)})
