"""Errors as RFC 9457 problems (`application/problem+json`), mapped once for every route."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError, ProgrammingError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mdstudio_core.adapters.warehouse import (
    ProfileError,
    ProfileTimeout,
    SourceUnavailable,
    UnknownSource,
)
from mdstudio_core.config import scrub
from mdstudio_core.domain.change_sets import InvalidItems
from mdstudio_core.domain.errors import (
    Conflict,
    Forbidden,
    Gone,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    StoreTimeout,
    field_path,
)
from mdstudio_core.domain.model import ApprovalRequest
from mdstudio_core.entrypoints.http.previews import PreviewsBusy
from mdstudio_core.entrypoints.http.schemas import ChangeSetIn
from mdstudio_core.service_layer.tokens import Unauthenticated

BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "A token from `mdstudio tokens create`; it fixes tenant, user and roles.",
}

PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str
    field: str | None = None
    errors: list[dict[str, str]] | None = None
    earliest_id: int | None = None  # 410: the first event the outbox keeps


def problem(
    status: int,
    kind: str,
    detail: str,
    instance: str,
    *,
    field: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    earliest_id: int | None = None,
) -> Response:
    """An RFC 9457 problem: `type` names the kind of failure, `field` the offending input. The
    detail and the instance are scrubbed of any URL's credentials (`config.scrub`)."""
    body: dict[str, Any] = {
        "type": f"urn:mdstudio:problem:{kind}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": scrub(detail),
        "instance": scrub(instance),
    }
    if field is not None:
        body["field"] = field
    if errors:
        body["errors"] = errors
    if earliest_id is not None:
        body["earliest_id"] = earliest_id
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


class MalformedJson(ValueError):
    """The body is not JSON (HTTP 400)."""


def parse_json(body: bytes) -> Any:
    """A request body as JSON: malformed is 400; nested beyond the parser's limit is invalid
    input (422), like any depth over the request's own bound."""
    if not body.strip():
        raise InvalidInput("a JSON request body is required", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise InvalidInput("is nested too deeply", field="body") from None
        raise MalformedJson(str(exc)) from None


def parsed_body(schema: str) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its JSON with `parse_json` (so FastAPI
    does not): required, and described by the named component schema."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }


_DOMAIN_ERRORS: dict[type[Exception], tuple[int, str]] = {
    InvalidInput: (422, "invalid-input"),
    PayloadTooLarge: (413, "payload-too-large"),
    Forbidden: (403, "forbidden"),
    NotFound: (404, "not-found"),
    Conflict: (409, "conflict"),
    StoreTimeout: (503, "unavailable"),
}


def _field_path(loc: tuple[Any, ...]) -> str:
    """`("body", "payload", "binding", "columns", 0)` -> `payload.binding.columns[0]`, the same
    spelling the services use."""
    parts = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
    return field_path(parts) or "body"


def error_text(request: Request, error: object) -> str:
    """An error's text as a problem shows it: scrubbed also of the passwords of the store and
    sources this server is configured with (`Settings.scrub`)."""
    return request.app.state.settings.scrub(str(error))  # type: ignore[no-any-return]


def install_error_handlers(app: FastAPI) -> None:
    """Map each failure to its status once, for every route."""

    @app.exception_handler(InvalidItems)
    async def invalid_items(request: Request, exc: InvalidItems) -> Response:
        """A change set with invalid items: the first in `detail`, every one in `errors`."""
        return problem(
            422,
            "invalid-input",
            error_text(request, exc.detail),
            request.url.path,
            field=exc.field,
            errors=[
                {key: error_text(request, value) for key, value in error.as_dict().items()}
                for error in exc.errors
            ],
        )

    @app.exception_handler(MalformedJson)
    async def malformed_json(request: Request, exc: MalformedJson) -> Response:
        return problem(
            400,
            "malformed-json",
            f"body: {error_text(request, exc)}",
            request.url.path,
            field="body",
        )

    for error, (status, kind) in _DOMAIN_ERRORS.items():
        app.add_exception_handler(error, _domain_handler(status, kind))

    @app.exception_handler(Gone)
    async def gone(request: Request, exc: Gone) -> Response:
        """Archived: resume from `earliest_id` (purge-safe resume)."""
        return problem(
            410,
            "gone",
            error_text(request, exc),
            request.url.path,
            earliest_id=exc.earliest_id,
        )

    @app.exception_handler(PreviewsBusy)
    async def previews_busy(request: Request, exc: PreviewsBusy) -> Response:
        return problem(
            429, "previews-busy", error_text(request, exc), request.url.path, headers=exc.headers
        )

    @app.exception_handler(ProfileError)
    async def warehouse_failed(request: Request, exc: ProfileError) -> Response:
        """A binding the warehouse cannot measure (a missing table or column) is the binding's
        fault; a warehouse that cannot answer (unknown or unreachable source, timeout) is not."""
        down = isinstance(exc, UnknownSource | SourceUnavailable | ProfileTimeout)
        return problem(
            503 if down else 422,
            "warehouse" if down else "binding",
            error_text(request, exc),
            request.url.path,
            field=None if down else "binding",
        )

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(request: Request, exc: Unauthenticated) -> Response:
        return problem(
            401,
            "unauthenticated",
            error_text(request, exc),
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
            error_text(request, exc.detail),
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
        field = exc.field if isinstance(exc, InvalidInput) else None
        return problem(status, kind, error_text(request, exc), request.url.path, field=field)

    return handle


def documented(model: Any, *errors: int, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """The documented responses of a route: its success body and the problems it can answer
    (every problem body is `Problem`, as `application/problem+json`; see `openapi`)."""
    documented: dict[int | str, dict[str, Any]] = {
        code: {"description": HTTPStatus(code).phrase} for code in errors
    }
    if model is not None:
        documented[status] = {"model": model, "description": HTTPStatus(status).phrase}
    return documented


# Every authenticated route can fail these ways.
AUTHED = (400, 401, 413, 422)


def openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's document, with every 4xx/5xx answered by `Problem` as problem+json."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for model in (Problem, ApprovalRequest, ChangeSetIn):  # bodies no route declares
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        document["components"].setdefault("securitySchemes", {})["HTTPBearer"] = BEARER_SCHEME
        for operations in document["paths"].values():
            for operation in operations.values():
                if "401" in operation.get("responses", {}):
                    operation["security"] = [{"HTTPBearer": []}]
                for code, response in operation.get("responses", {}).items():
                    if int(code) >= 400:
                        response["content"] = {
                            PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                        }
        app.openapi_schema = document
        return document

    return build
