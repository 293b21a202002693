"""`/notifications`: a tenant admin's webhooks and their deliveries."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mdstudio_core.domain.notifications import Delivery, DeliveryStatus
from mdstudio_core.entrypoints.http.auth import Caller, call
from mdstudio_core.entrypoints.http.problems import AUTHED, documented
from mdstudio_core.entrypoints.http.schemas import (
    DeliveryPage,
    JsonResponse,
    Limit,
    NewSubscription,
    Offset,
    SubscriptionList,
    SubscriptionOut,
    page,
)
from mdstudio_core.service_layer import notifications

router = APIRouter(
    prefix="/notifications", tags=["notifications"], default_response_class=JsonResponse
)
ADMIN = (*AUTHED, 403)


@router.post("", status_code=201, responses=documented(SubscriptionOut, *ADMIN, status=201))
@router.post("/subscribe", status_code=201, include_in_schema=False)
async def subscribe(request: Request, caller: Caller, new: NewSubscription) -> Response:
    """Subscribe a webhook (`tenant_admin`). The answer's `secret` signs every delivery
    (`X-Mdstudio-Signature: sha256=<HMAC-SHA256 of "<X-Mdstudio-Timestamp>." + body>`); it is
    shown only here. A destination that is or resolves to a non-public address is refused
    (422, `url`) unless the operator set `MDSTUDIO_NOTIFY_ALLOW_PRIVATE=1`."""
    secret, subscription = await call(
        notifications.subscribe,
        caller,
        new.url,
        new.events,
        new.min_tier,
        request.app.state.settings,
    )
    return JsonResponse({**subscription.public(), "secret": secret}, status_code=201)


@router.get("", responses=documented(SubscriptionList, *ADMIN))
async def list_subscriptions(caller: Caller) -> Response:
    """The tenant's active subscriptions (never their secrets)."""
    found = await call(notifications.list_subscriptions, caller)
    return JsonResponse({"items": [s.public() for s in found]})


@router.delete("/{subscription_id}", responses=documented(SubscriptionOut, *ADMIN, 404))
@router.post("/{subscription_id}/unsubscribe", include_in_schema=False)
async def unsubscribe(subscription_id: uuid.UUID, caller: Caller) -> Response:
    """End a subscription; its pending deliveries are not sent."""
    return JsonResponse((await call(notifications.unsubscribe, caller, subscription_id)).public())


@router.get("/deliveries", responses=documented(DeliveryPage, *ADMIN))
async def list_deliveries(
    caller: Caller,
    status: DeliveryStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """The tenant's deliveries, newest first: status, attempts and the last error."""
    found = await call(notifications.list_deliveries, caller, status, limit, offset)
    return JsonResponse(page(found, limit, offset))


@router.post("/deliveries/{delivery_id}/redeliver", responses=documented(Delivery, *ADMIN, 404))
async def redeliver(delivery_id: uuid.UUID, caller: Caller) -> Response:
    """Send a delivery again (a dead one, say) at the next tick."""
    return JsonResponse(await call(notifications.redeliver, caller, delivery_id))
