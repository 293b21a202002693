"""The console's pages of the live catalog: an entity with its profiles and history, and the
open incidents with their acknowledge and resolve forms."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.errors import InvalidInput, MdstudioError, NotFound
from mdstudio_core.domain.incidents import IncidentStatus
from mdstudio_core.domain.model import CATALOG_ENTITY_TYPES, EntityType, Identity
from mdstudio_core.entrypoints.http.console import views
from mdstudio_core.entrypoints.http.console.web import (
    BAD_CSRF,
    act_as_user,
    as_user,
    console_router,
    csrf_ok,
    forbidden,
    form,
    not_found,
    redirect,
    render,
    to_login,
)
from mdstudio_core.service_layer import approvals, catalog, incidents
from mdstudio_core.service_layer.tokens import Unauthenticated
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

router = console_router()


# -- an entity -------------------------------------------------------------------------------


@router.get("/entities/{key:path}")
async def entity_page(request: Request, key: str) -> Response:
    def load(uow: UnitOfWork, identity: Identity) -> dict[str, Any]:
        for entity_type in CATALOG_ENTITY_TYPES:
            try:
                entity = catalog.get_entity(uow, identity, key, entity_type)
                break
            except NotFound:
                continue
        else:
            raise NotFound(f"no entity {key!r} in this tenant")
        profiles = (
            catalog.profile_history(uow, identity, key, 60)
            if entity.entity_type is EntityType.GLOBAL_METADATA
            else []
        )
        found = incidents.list_incidents(uow, identity, entity_key=key, limit=20)
        return {
            "entity": entity,
            "profiles": profiles,
            "incident": next((i for i in found if i.active), None),
            "history": [
                a.summary
                for a in approvals.list_approvals(uow, identity, ApprovalFilter(entity_key=key))
            ],
            "events": catalog.list_events(uow, identity, entity_key=key, limit=200),
        }

    try:
        identity, page = await as_user(request, load)
    except Unauthenticated:
        return to_login()
    except (NotFound, InvalidInput) as exc:
        return not_found(request, None, str(exc))
    profiles = page["profiles"]
    return render(
        request,
        "entity.html",
        identity=identity,
        chart=views.score_chart(profiles),
        latest=profiles[0] if profiles else None,
        columns=views.column_rows(profiles[0] if profiles else None),
        **page,
    )


# -- incidents -------------------------------------------------------------------------------


@router.get("/incidents")
async def incidents_page(request: Request) -> Response:
    return await _incidents_page(request)


@router.post("/incidents/{incident_id}/acknowledge")
async def acknowledge(request: Request, incident_id: str) -> Response:
    return await _handle_incident(request, incident_id, incidents.acknowledge, "note")


@router.post("/incidents/{incident_id}/resolve")
async def resolve(request: Request, incident_id: str) -> Response:
    return await _handle_incident(request, incident_id, incidents.resolve, "reason")


async def _handle_incident(
    request: Request, incident_id: str, command: Any, field: str
) -> Response:
    fields = await form(request)
    if not csrf_ok(request, fields):
        return forbidden(request, BAD_CSRF)
    settings = request.app.state.settings

    async def refused(exc: MdstudioError, status: int) -> Response:
        return await _incidents_page(request, str(exc), status)

    handled = await act_as_user(
        request,
        lambda uow, who: command(uow, who, incident_id, fields.get(field), settings),
        "incident_id",
        refused,
    )
    return handled if isinstance(handled, Response) else redirect("/ui/incidents")


async def _incidents_page(
    request: Request, error: str | None = None, status: int = 200
) -> Response:
    def load(uow: UnitOfWork, identity: Identity) -> list[Any]:
        found = [
            incident
            for status in (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED)
            for incident in incidents.list_incidents(uow, identity, status=status, limit=500)
        ]
        return sorted(found, key=lambda incident: incident.opened_at, reverse=True)

    try:
        identity, found = await as_user(request, load)
    except Unauthenticated:
        return to_login()
    return render(request, "incidents.html", status, identity, incidents=found, error=error)
