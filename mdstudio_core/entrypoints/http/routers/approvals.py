"""`/approvals`: submit, the inbox, one request, and its decisions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.model import (
    TERM_PATTERN,
    ApprovalRequest,
    ApprovalStatus,
    EntityType,
    Lane,
    Tier,
)
from mdstudio_core.entrypoints.http.auth import Caller, Uow
from mdstudio_core.entrypoints.http.problems import AUTHED, documented
from mdstudio_core.entrypoints.http.schemas import (
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


@router.post("", status_code=201, responses=documented(Approval, *AUTHED, status=201))
def submit_approval(
    request: ApprovalRequest, identity: Caller, uow: Uow, http_request: Request
) -> Response:
    """Submit a change request; the payload's schema depends on `entity_type` (README)."""
    approval = approvals.submit(uow, identity, request.model_dump(mode="json", exclude_none=True))
    location = str(http_request.url_for("get_approval", approval_id=approval.id).path)
    return JsonResponse(approval, status_code=201, headers={"Location": location})


@router.get("", responses=documented(ApprovalPage, *AUTHED))
def list_approvals(
    identity: Caller,
    uow: Uow,
    entity: EntityFilter = None,
    status: ApprovalStatus | None = None,
    entity_type: EntityType | None = None,
    tier: Tier | None = None,
    lane: Lane | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> Response:
    """The inbox, newest first (`status=pending` for what awaits a decision)."""
    found = approvals.list_approvals(
        uow,
        identity,
        status=status,
        entity_type=entity_type,
        tier=tier,
        lane=lane,
        entity_key=entity,
        limit=limit,
        offset=offset,
    )
    return JsonResponse(page(found, limit, offset))


@router.get("/{approval_id}", responses=documented(Approval, *AUTHED, 404))
def get_approval(approval_id: uuid.UUID, identity: Caller, uow: Uow) -> Response:
    """One request, with its payload and the state it was made against."""
    return JsonResponse(approvals.get_approval(uow, identity, approval_id))


@router.post("/{approval_id}/approve", responses=DECIDED)
def approve_approval(
    approval_id: uuid.UUID,
    identity: Caller,
    uow: Uow,
    decision: Annotated[Decision | None, Body()] = None,
) -> Response:
    """Approve and apply (the required role; never one's own request; 409 if stale)."""
    return JsonResponse(approvals.approve(uow, identity, approval_id, _reason(decision)))


@router.post("/{approval_id}/reject", responses=DECIDED)
def reject_approval(
    approval_id: uuid.UUID, identity: Caller, uow: Uow, rejection: Rejection
) -> Response:
    """Reject with a reason (the required role; never one's own request)."""
    return JsonResponse(approvals.reject(uow, identity, approval_id, rejection.reason))


@router.post("/{approval_id}/cancel", responses=DECIDED)
def cancel_approval(
    approval_id: uuid.UUID,
    identity: Caller,
    uow: Uow,
    decision: Annotated[Decision | None, Body()] = None,
) -> Response:
    """Withdraw one's own pending request."""
    return JsonResponse(approvals.cancel(uow, identity, approval_id, _reason(decision)))


def _reason(decision: Decision | None) -> str | None:
    return decision.reason if decision else None
