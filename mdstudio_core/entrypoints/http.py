"""The HTTP API: the approval routes of the original design, behind real authentication.

A thin shell over the same services as the CLI: every rule (roles, four-eyes, tenants, staleness)
lives in `service_layer.approvals` and is enforced there once. This module only turns HTTP into
calls and domain errors into RFC 9457 problems. Who the caller is comes from one dependency,
`caller`: a bearer token (see `service_layer.tokens`), or the proxy's headers when the deployment
explicitly trusts them.

Endpoints are plain `def`s: the services block on the database, so FastAPI runs them in its
thread pool, and the engine's connection pool is sized to match.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from http import HTTPStatus
from typing import Annotated, Any

import orjson
from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mdstudio_core.adapters import migrations
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, field_path
from mdstudio_core.domain.model import (
    CANONICAL_KEY_PATTERN,
    TERM_PATTERN,
    ApprovalRequest,
    ApprovalStatus,
    EntityStatus,
    EntityType,
    Identity,
    Lane,
    Tier,
)
from mdstudio_core.service_layer import approvals, catalog, tokens
from mdstudio_core.service_layer.catalog import MAX_PAGE_SIZE, MAX_POSITION
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

PROBLEM_JSON = "application/problem+json"
# Connections per process: the thread pool runs up to 40 requests at once; 20 connections keep
# PostgreSQL's default 100 connections enough for a few workers and the tools beside them.
POOL_SIZE = 10
POOL_OVERFLOW = 10


# -- responses -----------------------------------------------------------------------------


class JsonResponse(JSONResponse):
    """JSON via orjson: the payloads are already JSON-ready dicts, so no model pass is needed
    (the documented response models are checked by the schemathesis tests instead)."""

    def render(self, content: Any) -> bytes:
        # Column names arrive as SQLAlchemy's `quoted_name`, a str subclass orjson refuses as a
        # key without this option.
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def problem(
    status: int,
    kind: str,
    detail: str,
    instance: str,
    *,
    field: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An RFC 9457 problem: `type` names the kind of failure, `field` the offending input."""
    body: dict[str, Any] = {
        "type": f"urn:mdstudio:problem:{kind}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = errors
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    field: str | None = None
    errors: list[dict[str, str]] | None = None


class ApprovalOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    entity_type: EntityType
    entity_id: uuid.UUID | None
    entity_key: str
    tier: Tier
    lane: Lane
    payload: dict[str, Any]
    current_state: dict[str, Any] | None
    status: ApprovalStatus
    decision_reason: str | None
    requested_by: str
    decided_by: str | None
    requested_at: dt.datetime
    decided_at: dt.datetime | None
    required_role: str


class _Page(BaseModel):
    limit: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null on the last.")


class ApprovalPage(_Page):
    items: list[ApprovalOut]


class _EntityOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: uuid.UUID
    tenant_id: uuid.UUID
    canonical_key: str
    tier: Tier
    owner: str | None
    status: EntityStatus
    version: int
    updated_at: dt.datetime
    updated_by: str


class MetadataOut(_EntityOut):
    label: str
    description: str
    domain: str
    data_type: str
    binding: dict[str, Any] | None


class MetadataPage(_Page):
    items: list[MetadataOut]


class KpiOut(_EntityOut):
    name: str
    description: str
    expression: str
    depends_on: list[str]


class KpiPage(_Page):
    items: list[KpiOut]


class ProfileOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    entity_urn: str
    canonical_key: str
    quality_score: float | None
    completeness: float | None
    uniqueness: float | None
    validity: float | None
    row_count: int | None
    columns: Any
    score_note: str | None
    details: Any
    trigger: str | None
    approval_id: uuid.UUID | None
    run_id: str | None
    sql: str | None
    sample: Any
    duration_ms: int | None
    created_at: dt.datetime


class ProfileHistory(BaseModel):
    items: list[ProfileOut]


class EventOut(BaseModel):
    id: int
    type: str
    tenant_id: uuid.UUID
    entity_type: EntityType
    entity_key: str
    correlation_id: uuid.UUID
    actor: str
    occurred_at: dt.datetime
    payload: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    next_after: int = Field(description="Pass as `after` to continue after this page.")


class Health(BaseModel):
    status: str
    revision: str


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = None


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(description="Why the request is turned down (required, not blank).")


def _page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    return {
        "items": items,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + len(items) if len(items) == limit else None,
    }


def _responses(model: type[BaseModel] | None, *errors: int, status: int = 200) -> dict:
    """The documented responses of a route: its success body and the problems it can answer
    (every problem body is `Problem`, as `application/problem+json`; see `_openapi`)."""
    documented: dict[int | str, dict[str, Any]] = {
        code: {"description": HTTPStatus(code).phrase} for code in errors
    }
    if model is not None:
        documented[status] = {"model": model, "description": HTTPStatus(status).phrase}
    return documented


# Every authenticated route can fail these ways.
_AUTHED = (400, 401, 413, 422)


# -- authentication ------------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `mdstudio tokens create`; it fixes tenant, user and roles.",
)


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """The one place a request's identity comes from.

    A bearer token decides tenant, user and roles; when one is present the proxy headers are
    ignored, so a request can never widen what its token grants. Only a deployment that sets
    `MDSTUDIO_TRUSTED_HEADER_AUTH=1` (behind a proxy that authenticates and overwrites them)
    takes `x-tenant-id`, `x-user-id` and `x-role` instead.
    """
    if credentials is not None:
        return tokens.authenticate(UnitOfWork(request.app.state.engine), credentials.credentials)
    if "authorization" in request.headers:
        raise tokens.Unauthenticated("use the Bearer scheme: Authorization: Bearer <token>")
    if request.app.state.trusted_headers and "x-tenant-id" in request.headers:
        return _identity_from_proxy(request.headers)
    raise tokens.Unauthenticated("credentials required: Authorization: Bearer <token>")


def _identity_from_proxy(headers: Mapping[str, str]) -> Identity:
    try:
        tenant_id = uuid.UUID(headers.get("x-tenant-id", ""))
        roles = frozenset(r.strip() for r in headers.get("x-role", "").split(",") if r.strip())
        return tokens.check_identity(Identity(tenant_id, headers.get("x-user-id", ""), roles))
    except (ValueError, InvalidInput) as exc:
        raise tokens.Unauthenticated(f"unusable proxy identity headers: {exc}") from exc


Caller = Annotated[Identity, Depends(caller)]


# -- the body limit ------------------------------------------------------------------------


class BodyLimit:
    """Answer 413 to a body over `max_bytes`, judged by Content-Length when given and by the
    bytes actually received otherwise, so an oversized body is never read to its end."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413,
            "body-too-large",
            f"the request body exceeds {self.max_bytes} bytes",
            scope["path"],
            field="body",
        )
        await response(scope, receive, send)


# -- errors --------------------------------------------------------------------------------

_DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    Forbidden: (403, "forbidden"),
    NotFound: (404, "not-found"),
    Conflict: (409, "conflict"),
}


def _field_path(loc: tuple[Any, ...]) -> str:
    """`("body", "payload", "binding", "columns", 0)` -> `payload.binding.columns[0]`, the same
    spelling the services use."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    return field_path(parts) or "body"


def _install_error_handlers(app: FastAPI) -> None:
    """Map each failure to its status once, for every route."""

    @app.exception_handler(InvalidInput)
    async def invalid_input(request: Request, exc: InvalidInput) -> Response:
        return problem(422, "invalid-input", str(exc), request.url.path, field=exc.field)

    for error, (status, kind) in _DOMAIN_ERRORS.items():
        app.add_exception_handler(error, _domain_handler(status, kind))

    @app.exception_handler(tokens.Unauthenticated)
    async def unauthenticated(request: Request, exc: tokens.Unauthenticated) -> Response:
        return problem(
            401,
            "unauthenticated",
            str(exc),
            request.url.path,
            headers={"WWW-Authenticate": 'Bearer realm="mdstudio"'},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if any(error["type"] == "json_invalid" for error in errors):
            detail = next(e for e in errors if e["type"] == "json_invalid")
            message = (detail.get("ctx") or {}).get("error", "malformed JSON")
            return problem(
                400, "malformed-json", f"body: {message}", request.url.path, field="body"
            )
        listed = [{"field": _field_path(tuple(e["loc"])), "message": e["msg"]} for e in errors]
        first = listed[0]
        return problem(
            422,
            "invalid-input",
            f"{first['field']}: {first['message']}",
            request.url.path,
            field=first["field"],
            errors=listed[:20],
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = "not-found" if exc.status_code == 404 else "http-error"
        return problem(
            exc.status_code,
            kind,
            str(exc.detail),
            request.url.path,
            headers=exc.headers,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(ProgrammingError)
    async def database_down(request: Request, exc: Exception) -> Response:
        """Unreachable, or reachable without its schema (`mdstudio db upgrade` not run)."""
        return problem(503, "unavailable", "the metadata store is unavailable", request.url.path)


def _domain_handler(status: int, kind: str) -> Callable[[Request, Exception], Any]:
    async def handle(request: Request, exc: Exception) -> Response:
        return problem(status, kind, str(exc), request.url.path)

    return handle


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's document, with every 4xx/5xx answered by `Problem` as problem+json."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        for operations in document["paths"].values():
            for operation in operations.values():
                for code, response in operation.get("responses", {}).items():
                    if int(code) >= 400:
                        response["content"] = {
                            PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                        }
        app.openapi_schema = document
        return document

    return build


# -- the application -----------------------------------------------------------------------


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The ASGI application. `settings` default to the environment's; without `engine`, one is
    made for the settings' store (and disposed of at shutdown)."""
    settings = settings or Settings.from_env()
    owns_engine = engine is None
    store = engine or create_store_engine(
        settings.store_url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_engine:
            store.dispose()

    app = FastAPI(
        title="mdstudio",
        version="1.0",
        description=(
            "Metadata Studio: a governed metadata catalog. Every change is an approval request "
            "that a second person with the required role decides. Authenticate with "
            "`Authorization: Bearer <token>` (`mdstudio tokens create`). Errors are RFC 9457 "
            "problems (`application/problem+json`) naming the offending `field`."
        ),
        lifespan=lifespan,
    )
    app.state.engine = store
    app.state.trusted_headers = settings.trusted_header_auth
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    _install_error_handlers(app)
    _install_routes(app)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    return app


EntityFilter = Annotated[
    str | None,
    Query(
        alias="entity",
        pattern=TERM_PATTERN,
        max_length=200,
        description="Only this entity key (canonical key or glossary term).",
    ),
]
MetadataKey = Annotated[str, Path(pattern=CANONICAL_KEY_PATTERN, max_length=200)]
Offset = Annotated[int, Query(ge=0, le=MAX_POSITION)]


def _limit(default: int) -> Any:
    return Query(default, ge=1, le=MAX_PAGE_SIZE)


def _install_routes(app: FastAPI) -> None:
    def uow() -> UnitOfWork:
        return UnitOfWork(app.state.engine)

    @app.post(
        "/approvals",
        status_code=201,
        tags=["approvals"],
        responses=_responses(ApprovalOut, *_AUTHED, status=201),
        response_class=JsonResponse,
    )
    def submit_approval(
        request: ApprovalRequest, identity: Caller, http_request: Request
    ) -> Response:
        """Submit a change request; the payload's schema depends on `entity_type` (README)."""
        approval = approvals.submit(
            uow(), identity, request.model_dump(mode="json", exclude_none=True)
        )
        location = str(http_request.url_for("get_approval", approval_id=approval.id).path)
        return JsonResponse(approval, status_code=201, headers={"Location": location})

    @app.get(
        "/approvals",
        tags=["approvals"],
        responses=_responses(ApprovalPage, *_AUTHED),
        response_class=JsonResponse,
    )
    def list_approvals(
        identity: Caller,
        entity: EntityFilter = None,
        status: ApprovalStatus | None = None,
        entity_type: EntityType | None = None,
        tier: Tier | None = None,
        lane: Lane | None = None,
        limit: int = _limit(50),
        offset: Offset = 0,
    ) -> Response:
        """The inbox, newest first (`status=pending` for what awaits a decision)."""
        found = approvals.list_approvals(
            uow(),
            identity,
            status=status,
            entity_type=entity_type,
            tier=tier,
            lane=lane,
            entity_key=entity,
            limit=limit,
            offset=offset,
        )
        return JsonResponse(_page(found, limit, offset))

    @app.get(
        "/approvals/{approval_id}",
        tags=["approvals"],
        responses=_responses(ApprovalOut, *_AUTHED, 404),
        response_class=JsonResponse,
    )
    def get_approval(approval_id: uuid.UUID, identity: Caller) -> Response:
        """One request, with its payload and the state it was made against."""
        return JsonResponse(approvals.get_approval(uow(), identity, approval_id))

    @app.post(
        "/approvals/{approval_id}/approve",
        tags=["approvals"],
        responses=_responses(ApprovalOut, *_AUTHED, 403, 404, 409),
        response_class=JsonResponse,
    )
    def approve_approval(
        approval_id: uuid.UUID,
        identity: Caller,
        decision: Annotated[Decision | None, Body()] = None,
    ) -> Response:
        """Approve and apply (the required role; never one's own request; 409 if stale)."""
        reason = decision.reason if decision else None
        return JsonResponse(approvals.approve(uow(), identity, approval_id, reason))

    @app.post(
        "/approvals/{approval_id}/reject",
        tags=["approvals"],
        responses=_responses(ApprovalOut, *_AUTHED, 403, 404, 409),
        response_class=JsonResponse,
    )
    def reject_approval(approval_id: uuid.UUID, identity: Caller, rejection: Rejection) -> Response:
        """Reject with a reason (the required role; never one's own request)."""
        return JsonResponse(approvals.reject(uow(), identity, approval_id, rejection.reason))

    @app.post(
        "/approvals/{approval_id}/cancel",
        tags=["approvals"],
        responses=_responses(ApprovalOut, *_AUTHED, 403, 404, 409),
        response_class=JsonResponse,
    )
    def cancel_approval(
        approval_id: uuid.UUID,
        identity: Caller,
        decision: Annotated[Decision | None, Body()] = None,
    ) -> Response:
        """Withdraw one's own pending request."""
        reason = decision.reason if decision else None
        return JsonResponse(approvals.cancel(uow(), identity, approval_id, reason))

    def _entities(
        entity_type: EntityType,
        identity: Identity,
        tier: Tier | None,
        status: EntityStatus | None,
        limit: int,
        offset: int,
    ) -> Response:
        found = catalog.list_entities(
            uow(), identity, entity_type, tier=tier, status=status, limit=limit, offset=offset
        )
        return JsonResponse(_page([entity.as_dict() for entity in found], limit, offset))

    @app.get(
        "/metadata",
        tags=["catalog"],
        responses=_responses(MetadataPage, *_AUTHED),
        response_class=JsonResponse,
    )
    def list_metadata(
        identity: Caller,
        tier: Tier | None = None,
        status: EntityStatus | None = None,
        limit: int = _limit(100),
        offset: Offset = 0,
    ) -> Response:
        """Live metadata fields of the tenant, by canonical key."""
        return _entities(EntityType.GLOBAL_METADATA, identity, tier, status, limit, offset)

    @app.get(
        "/metadata/{canonical_key}",
        tags=["catalog"],
        responses=_responses(MetadataOut, *_AUTHED, 404),
        response_class=JsonResponse,
    )
    def get_metadata(canonical_key: MetadataKey, identity: Caller) -> Response:
        """One live metadata field."""
        return JsonResponse(catalog.get_entity(uow(), identity, canonical_key).as_dict())

    @app.get(
        "/kpis",
        tags=["catalog"],
        responses=_responses(KpiPage, *_AUTHED),
        response_class=JsonResponse,
    )
    def list_kpis(
        identity: Caller,
        tier: Tier | None = None,
        status: EntityStatus | None = None,
        limit: int = _limit(100),
        offset: Offset = 0,
    ) -> Response:
        """Live KPIs of the tenant, by canonical key."""
        return _entities(EntityType.KPI, identity, tier, status, limit, offset)

    @app.get(
        "/kpis/{canonical_key}",
        tags=["catalog"],
        responses=_responses(KpiOut, *_AUTHED, 404),
        response_class=JsonResponse,
    )
    def get_kpi(canonical_key: MetadataKey, identity: Caller) -> Response:
        """One live KPI."""
        return JsonResponse(
            catalog.get_entity(uow(), identity, canonical_key, EntityType.KPI).as_dict()
        )

    @app.get(
        "/profiles",
        tags=["catalog"],
        responses=_responses(ProfileHistory, *_AUTHED, 404),
        response_class=JsonResponse,
    )
    def list_profiles(
        identity: Caller,
        entity: Annotated[str, Query(pattern=CANONICAL_KEY_PATTERN, max_length=200)],
        limit: int = _limit(20),
    ) -> Response:
        """Profiles of one metadata field, newest first."""
        return JsonResponse({"items": catalog.profile_history(uow(), identity, entity, limit)})

    @app.get(
        "/events",
        tags=["events"],
        responses=_responses(EventPage, *_AUTHED),
        response_class=JsonResponse,
    )
    def list_events(
        identity: Caller,
        after: Annotated[int, Query(ge=0, le=MAX_POSITION)] = 0,
        limit: int = _limit(100),
        entity: EntityFilter = None,
    ) -> Response:
        """The tenant's events, oldest first; continue with `after=next_after`."""
        found = catalog.list_events(uow(), identity, after=after, limit=limit, entity_key=entity)
        return JsonResponse(
            {
                "items": found,
                "next_after": found[-1].id if found else after,
            }
        )

    @app.get(
        "/healthz",
        tags=["service"],
        responses=_responses(Health, 503),
        response_class=JsonResponse,
    )
    def healthz() -> Response:
        """Reachable and migrated: reads the store's schema revision (no authentication)."""
        revision = migrations.current_revision(app.state.engine)
        if revision is None:
            return problem(
                503, "unavailable", "the store has no schema: run `mdstudio db upgrade`", "/healthz"
            )
        return JsonResponse({"status": "ok", "revision": revision})
