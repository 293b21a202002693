"""Who a request comes from, and the one way a route runs a command for them: `call`.

A bearer token (see `service_layer.tokens`) decides tenant, user and roles; when one is present
the proxy headers are ignored, so a request can never widen what its token grants. Only a
deployment that sets `MDSTUDIO_TRUSTED_HEADER_AUTH=1` (behind a proxy that authenticates and
overwrites them) takes `x-tenant-id`, `x-user-id` and `x-role` instead.

The token is looked up as the first statement of the command's own transaction, in the same
worker thread: one connection, one BEGIN and one thread hop per request. (A lookup of its own
cost a second transaction, a connection checkout and a thread hop: about 1.5 ms of CPU per
request, as much as a submit; see bench/api.py.) Revocation stays immediate: each request reads
the token's row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `mdstudio tokens create`; it fixes tenant, user and roles.",
)
P = ParamSpec("P")
T = TypeVar("T")


async def unit_of_work(request: Request) -> UnitOfWork:
    """A unit of work on the app's store, one per request."""
    return UnitOfWork(request.app.state.engine)


@dataclass(frozen=True)
class Credentials:
    """What the request presented: a token to look up, or an identity a trusted proxy set."""

    token: str | None = None
    proxy_identity: Identity | None = None

    def identity(self, uow: UnitOfWork) -> Identity:
        if self.proxy_identity is not None:
            return self.proxy_identity
        assert self.token is not None
        return tokens.authenticate(uow, self.token)


async def credentials(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Credentials:
    """The request's credentials, checked for form only (no store access): 401
    (`Unauthenticated`) when there are none."""
    if bearer is not None:
        return Credentials(token=bearer.credentials)
    if "authorization" in request.headers:
        raise tokens.Unauthenticated("use the Bearer scheme: Authorization: Bearer <token>")
    if request.app.state.settings.trusted_header_auth and "x-tenant-id" in request.headers:
        return Credentials(proxy_identity=_identity_from_proxy(request.headers))
    raise tokens.Unauthenticated("credentials required: Authorization: Bearer <token>")


def _identity_from_proxy(headers: Mapping[str, str]) -> Identity:
    try:
        tenant_id = uuid.UUID(headers.get("x-tenant-id", ""))
        roles = frozenset(r.strip() for r in headers.get("x-role", "").split(",") if r.strip())
        return tokens.check_identity(Identity(tenant_id, headers.get("x-user-id", ""), roles))
    except (ValueError, InvalidInput) as exc:
        raise tokens.Unauthenticated(f"unusable proxy identity headers: {exc}") from exc


Caller = Annotated[Credentials, Depends(credentials)]
Uow = Annotated[UnitOfWork, Depends(unit_of_work)]


async def call(
    service: Callable[Concatenate[UnitOfWork, Identity, P], T],
    caller: Credentials,
    uow: UnitOfWork,
    *args: Any,
    **kwargs: Any,
) -> T:
    """`service(uow, identity, *args, **kwargs)` in the thread pool (the services block on the
    store), in one transaction with the token lookup that gives `identity`."""

    def authorised() -> T:
        with uow:
            return service(uow, caller.identity(uow), *args, **kwargs)

    return await run_in_threadpool(authorised)
