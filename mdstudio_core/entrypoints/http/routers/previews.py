"""`/approvals/{id}/preview`: a request's evidence as the API gives it, the same JSON as
`mdstudio profiles preview --approval ID [--backtest] --json`. Found in the store on the app's
threads, then run against the warehouse on the previews' own (`PreviewSlots`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from mdstudio_core.entrypoints.http.auth import Caller, call
from mdstudio_core.entrypoints.http.problems import AUTHED, documented
from mdstudio_core.entrypoints.http.schemas import JsonResponse
from mdstudio_core.service_layer import backtest as backtests

router = APIRouter(prefix="/approvals", tags=["approvals"], default_response_class=JsonResponse)

Backtest = Annotated[
    bool,
    Query(
        description="Add the backtest: the last MDSTUDIO_BACKTEST_DAYS days scored under the "
        "live and the proposed rules (a change set: each item that changes rules)."
    ),
]


@router.get(
    "/{approval_id}/preview",
    responses=documented(dict[str, Any], *AUTHED, 403, 404, 429, 503),
)
async def preview_approval(
    request: Request, approval_id: str, caller: Caller, backtest: Backtest = False
) -> Response:
    """Profile the binding a pending request proposes now, saving nothing, for those who may
    decide it; with `backtest=true`, what its rule change would have done to the last days.
    A binding the warehouse cannot measure (a missing table or column) is 422; a warehouse
    that cannot answer (unknown or unreachable source, timeout) is 503; every preview slot
    taken is 429 (`problems.install_error_handlers`)."""
    state = request.app.state
    plan = await call(
        lambda uow, who: backtests.plan_evidence(
            uow, state.settings, who, approval_id, backtest=backtest
        ),
        caller,
    )
    evidence = await state.previews.run(
        lambda: backtests.run_evidence(state.settings, plan, state.warehouse_engines)
    )
    return JsonResponse(evidence)
