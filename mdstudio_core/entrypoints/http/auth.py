"""Who a request comes from: one dependency, `caller`.

A bearer token (see `service_layer.tokens`) decides tenant, user and roles; when one is present
the proxy headers are ignored, so a request can never widen what its token grants. Only a
deployment that sets `MDSTUDIO_TRUSTED_HEADER_AUTH=1` (behind a proxy that authenticates and
overwrites them) takes `x-tenant-id`, `x-user-id` and `x-role` instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `mdstudio tokens create`; it fixes tenant, user and roles.",
)


def unit_of_work(request: Request) -> UnitOfWork:
    """A unit of work on the app's store, one per request."""
    return UnitOfWork(request.app.state.engine)


Uow = Annotated[UnitOfWork, Depends(unit_of_work)]


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    uow: Uow,
) -> Identity:
    """The identity of the request's credentials; 401 (`Unauthenticated`) without usable ones."""
    if credentials is not None:
        return tokens.authenticate(uow, credentials.credentials)
    if "authorization" in request.headers:
        raise tokens.Unauthenticated("use the Bearer scheme: Authorization: Bearer <token>")
    if request.app.state.settings.trusted_header_auth and "x-tenant-id" in request.headers:
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
