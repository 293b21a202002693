"""`/events`: the tenant's event stream (the outbox), oldest first."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from mdstudio_core.entrypoints.http.auth import Caller, call
from mdstudio_core.entrypoints.http.problems import AUTHED, documented
from mdstudio_core.entrypoints.http.routers.approvals import EntityFilter
from mdstudio_core.entrypoints.http.schemas import EventPage, JsonResponse, Limit, Offset
from mdstudio_core.service_layer import catalog

router = APIRouter(tags=["events"], default_response_class=JsonResponse)


@router.get("/events", responses=documented(EventPage, *AUTHED, 410))
async def list_events(
    caller: Caller,
    after: Offset = 0,
    limit: Limit = 100,
    entity: EntityFilter = None,
) -> Response:
    """The tenant's events, oldest first; continue with `after=next_after`. When events after
    `after` were archived, 410 with `earliest_id`, the first event kept: resume after
    `earliest_id - 1` (the archive holds the others)."""
    found = await call(catalog.list_events, caller, after=after, limit=limit, entity_key=entity)
    return JsonResponse({"items": found, "next_after": found[-1].id if found else after})
