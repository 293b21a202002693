"""`/approvals`: submit, the inbox, one request, and its decisions."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.model import TERM_PATTERN, ApprovalStatus, EntityType, Lane, Tier
from mdstudio_core.entrypoints.http.auth import Caller, call
from mdstudio_core.entrypoints.http.problems import AUTHED, documented, parse_json
from mdstudio_core.entrypoints.http.schemas import (
    ApprovalOut,
    ApprovalPage,
    Decision,
    JsonResponse,
    Limit,
    Offset,
    Rejection,
    page,
)
from mdstudio_core.service_layer import approvals

router = APIRouter(prefix="/approvals", tags=["approvals"], default_response_class=JsonResponse)

EntityFilter = Annotated[
    str | None,
    Query(
        alias="entity",
        pattern=TERM_PATTERN,
        max_length=200,
        description="Only this entity key (canonical key or glossary term).",
    ),
]
DECIDED = documented(Approval, *AUTHED, 403, 404, 409)
Include = Annotated[
    Literal["payload"] | None,
    Query(description="`payload`: items carry their payload and the state they were made against."),
]


@router.post(
    "",
    status_code=201,
    responses=documented(Approval, *AUTHED, status=201),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ApprovalRequest"}}
            },
        }
    },
)
async def submit_approval(request: Request, caller: Caller) -> Response:
    """Submit a change request; the payload's schema depends on `entity_type` (README).

    The body is parsed here and validated once, by the service (bounded in depth and size
    before anything recursive touches it)."""
    raw = parse_json(await request.body())
    approval = await call(approvals.submit, caller, raw, request.app.state.settings)
    location = request.app.url_path_for("get_approval", approval_id=str(approval.id))
    return JsonResponse(approval, status_code=201, headers={"Location": location})


@router.get("", responses=documented(ApprovalPage, *AUTHED))
async def list_approvals(
    caller: Caller,
    entity: EntityFilter = None,
    status: ApprovalStatus | None = None,
    entity_type: EntityType | None = None,
    tier: Tier | None = None,
    lane: Lane | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
    include: Include = None,
) -> Response:
    """The inbox, newest first (`status=pending` for what awaits a decision). Items leave out
    `payload` and `current_state` unless `include=payload`: a page stays small."""
    include_payload = include == "payload"
    found = await call(
        approvals.list_approvals,
        caller,
        status=status,
        entity_type=entity_type,
        tier=tier,
        lane=lane,
        entity_key=entity,
        limit=limit,
        offset=offset,
        include_payload=include_payload,
    )
    return JsonResponse(page([item.as_dict(include_payload) for item in found], limit, offset))


@router.get("/{approval_id}", responses=documented(ApprovalOut, *AUTHED, 404))
async def get_approval(approval_id: uuid.UUID, request: Request, caller: Caller) -> Response:
    """One request, with its payload, the state it was made against and its `impact` (the
    KPIs depending on a field whose binding it changes, deprecates or unbinds)."""
    settings = request.app.state.settings
    return JsonResponse(await call(approvals.show_approval, caller, approval_id, settings))


@router.post("/{approval_id}/approve", responses=DECIDED)
async def approve_approval(
    approval_id: uuid.UUID,
    request: Request,
    caller: Caller,
    decision: Annotated[Decision | None, Body()] = None,
) -> Response:
    """Approve and apply (the required role; never one's own request; 409 if stale)."""
    reason = decision.reason if decision else None
    settings = request.app.state.settings
    return JsonResponse(await call(approvals.approve, caller, approval_id, reason, settings))


@router.post("/{approval_id}/reject", responses=DECIDED)
async def reject_approval(approval_id: uuid.UUID, caller: Caller, rejection: Rejection) -> Response:
    """Reject with a reason (the required role; never one's own request)."""
    return JsonResponse(await call(approvals.reject, caller, approval_id, rejection.reason))


@router.post("/{approval_id}/cancel", responses=DECIDED)
async def cancel_approval(
    approval_id: uuid.UUID,
    caller: Caller,
    decision: Annotated[Decision | None, Body()] = None,
) -> Response:
    """Withdraw one's own pending request."""
    reason = decision.reason if decision else None
    return JsonResponse(await call(approvals.cancel, caller, approval_id, reason))
