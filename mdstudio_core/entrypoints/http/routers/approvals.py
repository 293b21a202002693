"""`/approvals`: submit, the inbox, one request, and its decisions."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.idempotency import Answer
from mdstudio_core.domain.model import (
    TERM_PATTERN,
    ApprovalStatus,
    EntityType,
    Identity,
    Lane,
    Tier,
)
from mdstudio_core.entrypoints.http.auth import Caller, call
from mdstudio_core.entrypoints.http.idempotency import IdempotencyKey, answer
from mdstudio_core.entrypoints.http.problems import AUTHED, documented, parse_json, parsed_body
from mdstudio_core.entrypoints.http.schemas import (
    ApprovalOut,
    ApprovalPage,
    Decision,
    JsonResponse,
    Limit,
    Offset,
    Rejection,
    json_bytes,
    page,
)
from mdstudio_core.service_layer import approvals
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

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
    openapi_extra=parsed_body("ApprovalRequest"),
)
async def submit_approval(
    request: Request, caller: Caller, idempotency_key: IdempotencyKey = None
) -> Response:
    """Submit a change request; the payload's schema depends on `entity_type` (README).

    The body is parsed here and validated once, by the service (bounded in depth and size
    before anything recursive touches it)."""
    raw = parse_json(await request.body())
    settings = request.app.state.settings

    def submitted(uow: UnitOfWork, identity: Identity) -> Answer:
        approval = approvals.submit(uow, identity, raw, settings)
        location = request.app.url_path_for("get_approval", approval_id=str(approval.id))
        return Answer(201, json_bytes(approval), str(location))

    return await answer(caller, request, idempotency_key, submitted)


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
    wanted = ApprovalFilter(
        status=status,
        entity_type=entity_type,
        tier=tier,
        lane=lane,
        entity_key=entity,
        limit=limit,
        offset=offset,
        include_payload=include_payload,
    )
    found = await call(approvals.list_approvals, caller, wanted)
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
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Approve and apply (the required role; never one's own request; 409 if stale)."""
    reason = decision.reason if decision else None
    settings = request.app.state.settings

    def approved(uow: UnitOfWork, identity: Identity) -> Answer:
        return _decided(approvals.approve(uow, identity, approval_id, reason, settings))

    return await answer(caller, request, idempotency_key, approved)


@router.post("/{approval_id}/reject", responses=DECIDED)
async def reject_approval(
    approval_id: uuid.UUID,
    request: Request,
    caller: Caller,
    rejection: Rejection,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Reject with a reason (the required role; never one's own request)."""

    def rejected(uow: UnitOfWork, identity: Identity) -> Answer:
        return _decided(approvals.reject(uow, identity, approval_id, rejection.reason))

    return await answer(caller, request, idempotency_key, rejected)


@router.post("/{approval_id}/cancel", responses=DECIDED)
async def cancel_approval(
    approval_id: uuid.UUID,
    request: Request,
    caller: Caller,
    decision: Annotated[Decision | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Withdraw one's own pending request."""
    reason = decision.reason if decision else None

    def cancelled(uow: UnitOfWork, identity: Identity) -> Answer:
        return _decided(approvals.cancel(uow, identity, approval_id, reason))

    return await answer(caller, request, idempotency_key, cancelled)


def _decided(approval: Approval) -> Answer:
    return Answer(200, json_bytes(approval))
