"""`/change-sets`: submit many requests as one change set, and read one back. A set is an
approval request like any other: `/approvals/{id}` and its decision routes work on it."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mdstudio_core.domain.change_sets import parse_body
from mdstudio_core.domain.model import Identity
from mdstudio_core.entrypoints.http.auth import Caller, call
from mdstudio_core.entrypoints.http.problems import AUTHED, documented, parse_json, parsed_body
from mdstudio_core.entrypoints.http.schemas import ChangeSetOut, JsonResponse
from mdstudio_core.service_layer import change_sets
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

router = APIRouter(prefix="/change-sets", tags=["approvals"], default_response_class=JsonResponse)


@router.post(
    "",
    status_code=201,
    responses=documented(ChangeSetOut, *AUTHED, status=201),
    openapi_extra=parsed_body("ChangeSetIn"),
)
async def submit_change_set(request: Request, caller: Caller) -> Response:
    """Submit 1 to 10,000 requests as one change set, all or nothing: any invalid item is a
    422 listing every bad item by number (from 1) and field in `errors`, and nothing is
    stored. The set is one approval request (`/approvals/{id}`), decided by the role of its
    strictest item; approving it applies every item in one transaction."""
    title, requests = parse_body(parse_json(await request.body()))
    settings = request.app.state.settings

    def submit_and_show(uow: UnitOfWork, identity: Identity) -> dict[str, Any]:
        submitted = change_sets.submit(uow, identity, title, requests, settings)
        return change_sets.show_loaded(uow, settings, submitted.approval)

    record = await call(submit_and_show, caller)
    location = request.app.url_path_for("get_change_set", change_set_id=str(record["id"]))
    return JsonResponse(record, status_code=201, headers={"Location": location})


@router.get("/{change_set_id}", responses=documented(ChangeSetOut, *AUTHED, 404))
async def get_change_set(change_set_id: uuid.UUID, request: Request, caller: Caller) -> Response:
    """A change set: its request, its items with their changes (stale ones flagged while it
    is pending), and `impact`, every KPI any item endangers."""
    settings = request.app.state.settings
    return JsonResponse(await call(change_sets.show, caller, change_set_id, settings))
