"""Who a request comes from, and the one way a route runs a command for them: `call`.

A bearer token (see `service_layer.tokens`) decides tenant, user and roles; when one is present
the proxy headers are ignored, so a request can never widen what its token grants. Only a
deployment that sets `MDSTUDIO_TRUSTED_HEADER_AUTH=1` (behind a proxy that authenticates and
overwrites them) takes `x-tenant-id`, `x-user-id` and `x-role` instead.

The token is looked up as the first statement of the command's own transaction, in the same
worker thread: one connection, one BEGIN and one thread hop per request. (A lookup of its own
cost a second transaction, a connection checkout and a thread hop: as much CPU per request
as a submit; see bench/api.py.) Revocation stays immediate: each request reads
the token's row.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import Depends, Request

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

P = ParamSpec("P")
T = TypeVar("T")


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


@dataclass(frozen=True)
class Context:
    """A request's credentials, its unit of work on the app's store, and the threads that run
    blocking work."""

    credentials: Credentials
    uow: UnitOfWork
    executor: Executor


async def context(request: Request) -> Context:
    """The request's credentials, checked for form only (no store access, no thread hop): 401
    (`Unauthenticated`) when there are none. One dependency, so FastAPI solves one per
    request (the bearer scheme is documented by `problems.openapi`)."""
    state = request.app.state
    return Context(_credentials(request), UnitOfWork(state.engine), state.executor)


def _credentials(request: Request) -> Credentials:
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise tokens.Unauthenticated("use the Bearer scheme: Authorization: Bearer <token>")
        return Credentials(token=token.strip())
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


Caller = Annotated[Context, Depends(context)]


async def call(
    service: Callable[Concatenate[UnitOfWork, Identity, P], T],
    caller: Context,
    *args: Any,
    **kwargs: Any,
) -> T:
    """`service(uow, identity, *args, **kwargs)` in a worker thread (the services block on the
    store), in one transaction with the token lookup that gives `identity`. The app's own
    executor, not anyio's thread pool: less CPU per hop (`bench/api.py`)."""
    uow = caller.uow

    def authorised() -> T:
        with uow:
            return service(uow, caller.credentials.identity(uow), *args, **kwargs)

    return await asyncio.get_running_loop().run_in_executor(caller.executor, authorised)
