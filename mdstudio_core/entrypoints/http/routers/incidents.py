"""`/incidents`: the tenant's quality incidents, and acknowledging or resolving one."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from mdstudio_core.domain.incidents import Incident, IncidentStatus
from mdstudio_core.domain.model import Tier
from mdstudio_core.entrypoints.http.auth import Caller, call
from mdstudio_core.entrypoints.http.problems import AUTHED, documented
from mdstudio_core.entrypoints.http.routers.approvals import EntityFilter
from mdstudio_core.entrypoints.http.schemas import (
    Acknowledgement,
    IncidentPage,
    JsonResponse,
    Limit,
    Offset,
    Resolution,
    page,
)
from mdstudio_core.service_layer import incidents

router = APIRouter(prefix="/incidents", tags=["incidents"], default_response_class=JsonResponse)
HANDLED = documented(Incident, *AUTHED, 403, 404, 409)


@router.get("", responses=documented(IncidentPage, *AUTHED))
async def list_incidents(
    caller: Caller,
    status: IncidentStatus | None = None,
    tier: Tier | None = None,
    entity: EntityFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """The tenant's incidents, newest first."""
    found = await call(
        incidents.list_incidents,
        caller,
        status=status,
        tier=tier,
        entity_key=entity,
        limit=limit,
        offset=offset,
    )
    return JsonResponse(page(found, limit, offset))


@router.get("/{incident_id}", responses=documented(Incident, *AUTHED, 404))
async def get_incident(incident_id: uuid.UUID, caller: Caller) -> Response:
    """One incident."""
    return JsonResponse(await call(incidents.get_incident, caller, incident_id))


@router.post("/{incident_id}/ack", responses=HANDLED)
async def acknowledge_incident(
    incident_id: uuid.UUID,
    request: Request,
    caller: Caller,
    acknowledgement: Annotated[Acknowledgement | None, Body()] = None,
) -> Response:
    """Someone is on it (the role that decides the entity's tier, or `tenant_admin`)."""
    note = acknowledgement.note if acknowledgement else None
    settings = request.app.state.settings
    return JsonResponse(await call(incidents.acknowledge, caller, incident_id, note, settings))


@router.post("/{incident_id}/resolve", responses=HANDLED)
async def resolve_incident(
    incident_id: uuid.UUID, request: Request, caller: Caller, resolution: Resolution
) -> Response:
    """Close it with a reason (the role that decides the entity's tier, or `tenant_admin`)."""
    settings = request.app.state.settings
    return JsonResponse(
        await call(incidents.resolve, caller, incident_id, resolution.reason, settings)
    )
