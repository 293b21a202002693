"""`Idempotency-Key` on the routes that change the catalog (`POST /approvals` and the
decisions): a retry with the same key and body gets the first answer, status and body, with
`Idempotent-Replayed: true`, and the work is not done again; the same key with another body is
422 naming the header. This is what lets a client retry through a load balancer when the server
it reached died mid-request (`mdstudio_core.service_layer.idempotency`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import Header, Request
from fastapi.responses import Response

from mdstudio_core.domain.idempotency import KEY_PATTERN, Answer, keyed_request
from mdstudio_core.domain.model import Identity
from mdstudio_core.entrypoints.http.auth import Context, call
from mdstudio_core.service_layer import idempotency
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description=(
            "Names this request (1 to 255 visible ASCII characters, a UUID say): a retry with "
            "the same key and body gets the first answer without the work being done again "
            "(header `Idempotent-Replayed: true`); the same key with another body is 422. "
            "Keys are per tenant, kept at least `MDSTUDIO_IDEMPOTENCY_KEY_HOURS` (24)."
        ),
    ),
]
Work = Callable[[UnitOfWork, Identity], Answer]


async def answer(caller: Context, request: Request, key: str | None, work: Work) -> Response:
    """`work`'s answer as a response, done once per `key` (every time without one)."""
    settings = request.app.state.settings
    body = _json_or_none(await request.body())

    def once(uow: UnitOfWork, identity: Identity) -> Answer:
        if key is None:
            return work(uow, identity)
        keyed = keyed_request(key, identity.user, request.method, request.url.path, body)
        return idempotency.answer_once(
            uow, identity, keyed, settings.idempotency_key_lifetime, lambda: work(uow, identity)
        )

    given = await call(once, caller)
    headers = {"Location": given.location} if given.location else {}
    if given.replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        given.body, status_code=given.status, media_type="application/json", headers=headers
    )


def _json_or_none(body: bytes) -> Any:
    """The body as JSON, None when there is none (the route has already parsed it once)."""
    return orjson.loads(body) if body.strip() else None
