"""The console's pages and forms under `/ui/`. Every rule (tenant, roles, four-eyes, staleness)
is the services'; a refused action is shown on the page with the rule's own words."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from mdstudio_core.adapters.warehouse import ProfileError
from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.approvals import Approval, parse_approval_id
from mdstudio_core.domain.errors import Forbidden, InvalidInput, MdstudioError, NotFound
from mdstudio_core.domain.model import (
    ApprovalStatus,
    EntityType,
    Identity,
    Lane,
    Tier,
)
from mdstudio_core.entrypoints.http.console import backtest_chart, catalog_pages, views
from mdstudio_core.entrypoints.http.console.web import (
    BAD_CSRF,
    LOGIN_CSRF_COOKIE,
    LOGIN_CSRF_LIFETIME_S,
    act_as_user,
    as_user,
    blocking,
    clear_session_cookie,
    console_router,
    csrf_ok,
    forbidden,
    form,
    login_csrf_key,
    login_csrf_ok,
    new_login_csrf,
    not_found,
    redirect,
    render,
    secure,
    session_id_of,
    set_session_cookie,
    to_login,
)
from mdstudio_core.entrypoints.http.previews import PreviewsBusy
from mdstudio_core.service_layer import (
    approvals,
    catalog,
    change_sets,
    console_sessions,
    lineage,
    profiling,
    two_person,
)
from mdstudio_core.service_layer import backtest as backtest_service
from mdstudio_core.service_layer.tokens import Unauthenticated
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

router = console_router()
STATIC = Path(__file__).parent / "static"
MY_REQUESTS = 100
STALE = "changed since it was submitted: submit again"


def install(app: FastAPI) -> None:
    """Serve the console on `app`: its stylesheet first, then the pages (the last of which
    answers any other `/ui/` path with the 404 page)."""
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")
    app.include_router(catalog_pages.router)
    app.include_router(router)


# -- signing in ------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request) -> Response:
    return await _login_form(request)


@router.post("/login")
async def login(request: Request) -> Response:
    """Sign in: counted first (per client address, in the store), then the form's CSRF pair,
    then the token."""
    fields = await form(request)
    engine, settings = request.app.state.engine, request.app.state.settings
    client = request.client.host if request.client else ""
    try:
        await blocking(
            request,
            lambda: console_sessions.count_sign_in(
                UnitOfWork(engine), client, settings.console_login_attempts_per_minute
            ),
        )
    except console_sessions.TooManySignIns as exc:
        refused = await _login_form(request, str(exc), 429)
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    if not login_csrf_ok(request, fields, await login_csrf_key(request)):
        return forbidden(request, BAD_CSRF)
    try:
        session = await blocking(
            request,
            lambda: console_sessions.open_session(
                UnitOfWork(engine),
                fields.get("token", ""),
                settings.console_session_lifetime,
                settings.console_idle_timeout,
            ),
        )
    except Unauthenticated as exc:
        return await _login_form(request, str(exc), 401)
    response = redirect("/ui/")
    set_session_cookie(response, request, session)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    fields = await form(request)
    if not csrf_ok(request, fields):
        return forbidden(request, BAD_CSRF)
    engine, session_id = request.app.state.engine, session_id_of(request)
    await blocking(request, lambda: console_sessions.end_session(UnitOfWork(engine), session_id))
    response = to_login()
    clear_session_cookie(response, request)
    return response


async def _login_form(request: Request, error: str | None = None, status: int = 200) -> Response:
    cookie, field = new_login_csrf(await login_csrf_key(request))
    response = render(request, "login.html", status, csrf=field, error=error)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        cookie,
        max_age=LOGIN_CSRF_LIFETIME_S,
        path="/ui/login",
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )
    return response


# -- the inbox -------------------------------------------------------------------------------


@router.get("/")
async def inbox(request: Request) -> Response:
    params = dict(request.query_params)
    try:
        filters = {
            "tier": views.choice(params, "tier", Tier),
            "lane": views.choice(params, "lane", Lane),
            "entity_type": views.choice(params, "entity_type", EntityType),
        }
        offset = views.offset_of(params)
        per_page = views.per_page_of(params)
    except InvalidInput as exc:
        return render(request, "error.html", 422, None, title="Invalid filter", detail=str(exc))
    oldest_first = params.get("order", "oldest") != "newest"

    def load(uow: UnitOfWork, identity: Identity) -> dict[str, Any]:
        inbox = ApprovalFilter(
            status=ApprovalStatus.PENDING, **filters, oldest_first=oldest_first
        ).decidable_by(identity)

        def page(start: int, limit: int) -> list[Any]:
            wanted = dataclasses.replace(inbox, limit=limit, offset=start)
            return approvals.list_approvals(uow, identity, wanted)

        decidable = page(offset, per_page)
        more = bool(page(offset + per_page, 1)) if len(decidable) == per_page else False
        own = ApprovalFilter(status=ApprovalStatus.PENDING, limit=MY_REQUESTS).made_by(identity)
        mine = approvals.list_approvals(uow, identity, own)
        listed = [item.summary for item in (*decidable, *mine)]
        sets = [r["id"] for r in listed if r["entity_type"] == EntityType.CHANGE_SET.value]
        shared = [r["id"] for r in listed if r["required_approvals"] > 1]
        return {
            "decidable": decidable,
            "more": more,
            "mine": mine,
            "items": change_sets.item_counts(uow, identity, sets),
            "endorsements": two_person.endorsements(uow, identity, shared),
        }

    try:
        identity, found = await as_user(request, load)
    except Unauthenticated:
        return to_login()
    now = dt.datetime.now(dt.UTC)
    deadlines = request.app.state.settings.approval_deadlines

    def rows(listings: list[Any]) -> list[dict[str, Any]]:
        return [
            views.inbox_row(item.summary, deadlines, now, found["items"], found["endorsements"])
            for item in listings
        ]

    return render(
        request,
        "inbox.html",
        identity=identity,
        rows=rows(found["decidable"]),
        more=found["more"],
        mine=rows(found["mine"]),
        filters={k: v.value if v else "" for k, v in filters.items()},
        order="oldest" if oldest_first else "newest",
        offset=offset,
        page_size=per_page,
        page_sizes=views.PAGE_SIZES,
        tiers=list(Tier),
        lanes=list(Lane),
        entity_types=list(EntityType),
        done=params.get("done"),
        done_key=params.get("key"),
        now=now,
    )


# -- a request -------------------------------------------------------------------------------


@router.get("/approvals/{approval_id}")
async def request_page(request: Request, approval_id: str) -> Response:
    return await _request_page(request, approval_id)


@router.post("/approvals/{approval_id}/evidence")
async def evidence(request: Request, approval_id: str) -> Response:
    """Profile the proposed binding now (nothing is saved) and show it beside the diff: for
    those who may decide the request, on the previews' own threads (`PreviewSlots`)."""
    settings = request.app.state.settings
    return await _from_warehouse(
        request,
        approval_id,
        lambda uow, who: profiling.plan_approval_preview(uow, settings, who, approval_id),
        lambda plan: {
            "evidence": profiling.run_preview(settings, plan, request.app.state.warehouse_engines)
        },
    )


@router.post("/approvals/{approval_id}/backtest")
async def backtest(request: Request, approval_id: str) -> Response:
    """What the rule change would have done to the field's last days (each item of a change
    set that changes rules): for those who may decide, on the previews' threads."""
    settings = request.app.state.settings
    return await _from_warehouse(
        request,
        approval_id,
        lambda uow, who: backtest_service.plan_backtests(uow, settings, who, approval_id),
        lambda plans: {
            "backtests": backtest_chart.shown(settings, plans, request.app.state.warehouse_engines)
        },
    )


async def _from_warehouse(
    request: Request,
    approval_id: str,
    plan: Callable[[UnitOfWork, Identity], Any],
    run: Callable[[Any], dict[str, Any]],
) -> Response:
    """The request page with what `run` read from the warehouse (on the previews' threads)
    for what `plan` found in the store, or with why it could not."""
    if not csrf_ok(request, await form(request)):
        return forbidden(request, BAD_CSRF)
    state = request.app.state
    try:
        parse_approval_id(approval_id)
    except InvalidInput as exc:
        return not_found(request, None, str(exc))
    try:
        _, planned = await as_user(request, plan)
        found = await state.previews.run(lambda: run(planned))
    except Unauthenticated:
        return to_login()
    except NotFound as exc:
        return not_found(request, None, str(exc))
    except Forbidden as exc:
        return await _request_page(request, approval_id, evidence_error=str(exc), status=403)
    except PreviewsBusy as exc:
        busy = await _request_page(request, approval_id, evidence_error=str(exc), status=429)
        busy.headers.update(exc.headers)
        return busy
    except (MdstudioError, ProfileError) as exc:
        return await _request_page(request, approval_id, evidence_error=str(exc))
    return await _request_page(request, approval_id, **found)


@router.post("/approvals/{approval_id}/approve")
async def approve(request: Request, approval_id: str) -> Response:
    settings = request.app.state.settings
    return await _decide(
        request, approval_id, "approved", functools.partial(approvals.approve, settings=settings)
    )


@router.post("/approvals/{approval_id}/reject")
async def reject(request: Request, approval_id: str) -> Response:
    return await _decide(request, approval_id, "rejected", approvals.reject)


@router.post("/approvals/{approval_id}/cancel")
async def cancel(request: Request, approval_id: str) -> Response:
    return await _decide(request, approval_id, "cancelled", approvals.cancel)


# A decision as the console calls it: (unit of work, the user, the request's id, the reason).
Decision = Callable[[UnitOfWork, Identity, str, str | None], Approval]


async def _decide(request: Request, approval_id: str, done: str, command: Decision) -> Response:
    fields = await form(request)
    if not csrf_ok(request, fields):
        return forbidden(request, BAD_CSRF)
    reason = fields.get("reason")

    async def refused(exc: MdstudioError, status: int) -> Response:
        if status == 409:  # stale, or decided already: the page words it (`_request_page`)
            return await _request_page(request, approval_id, conflict=str(exc), status=status)
        return await _request_page(request, approval_id, error=str(exc), status=status)

    decided = await act_as_user(
        request, lambda uow, who: command(uow, who, approval_id, reason), "approval_id", refused
    )
    if isinstance(decided, Response):
        return decided
    if decided.status is ApprovalStatus.PENDING:  # an endorsement: more approvers are needed
        done = f"endorsed ({len(decided.endorsements)} of {decided.required_approvals} approvals)"
    return redirect(f"/ui/?done={quote(done)}&key={quote(decided.entity_key, safe='')}")


async def _request_page(
    request: Request,
    approval_id: str,
    *,
    error: str | None = None,
    conflict: str | None = None,
    status: int = 200,
    evidence: profiling.Preview | None = None,
    evidence_error: str | None = None,
    backtests: list[backtest_chart.Shown] | None = None,
) -> Response:
    settings = request.app.state.settings

    def load(uow: UnitOfWork, identity: Identity) -> views.RequestView | views.ChangeSetView:
        approval = approvals.get_approval(uow, identity, approval_id)
        if approval.entity_type is EntityType.CHANGE_SET:
            change_set, live_items = change_sets.load(uow, approval)
            impact = lineage.combined_impact(uow, settings, approval.tenant_id, change_set.items)
            return views.ChangeSetView.of(change_set, live_items, impact)
        try:
            live = catalog.get_entity(uow, identity, approval.entity_key, approval.entity_type)
        except NotFound:
            live = None
        impact: list[dict[str, Any]] = []
        if live is not None and approval.entity_type is EntityType.GLOBAL_METADATA:
            impact = lineage.impact(uow, identity, settings, approval.entity_key)["kpis"]
        return views.RequestView.of(approval, live, impact)

    try:
        identity, view = await as_user(request, load)
    except Unauthenticated:
        return to_login()
    except (NotFound, InvalidInput) as exc:
        return not_found(request, None, str(exc))
    if conflict is not None:  # stale reads as the rule; already decided as the service says
        error = f"{view.approval.entity_key} {STALE} ({conflict})" if view.stale else conflict
    return render(
        request,
        "change_set.html" if isinstance(view, views.ChangeSetView) else "approval.html",
        status,
        identity,
        view=view,
        error=error,
        evidence=evidence,
        evidence_error=evidence_error,
        backtests=backtests,
        deadline=settings.approval_deadlines.deadline(
            view.approval.tier, view.approval.requested_at
        ),
        now=dt.datetime.now(dt.UTC),
    )


# -- anything else ---------------------------------------------------------------------------


@router.get("/{rest:path}")
async def unknown(request: Request, rest: str) -> Response:
    return not_found(request, None, f"there is no page at /ui/{rest}")
