"""Webhook notifications: subscriptions (a tenant admin's), turning outbox events into
deliveries, and sending them with retries.

`collect` reads the outbox after the `notification_sensor` cursor kept in the store and writes
the deliveries and the new cursor in one transaction (`consumers.consume`): an event becomes a
delivery exactly once, whatever crashes, and once more per replay of it. `send_due` posts
outside any transaction and records each attempt with a compare-and-set, so two senders never
record one attempt twice; a receiver may see a delivery again only when a sender dies between
its POST and that record (its id is the idempotency key).

A destination is judged at subscription and again at every send, on the addresses its host
resolves to then, and the POST goes to an address so checked (DNS cannot swap it in between).
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import orjson

from mdstudio_core.adapters import webhooks
from mdstudio_core.config import Settings
from mdstudio_core.domain import clock
from mdstudio_core.domain import notifications as rules
from mdstudio_core.domain.errors import Forbidden, InvalidInput, NotFound
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.model import TENANT_ADMIN_ROLE, Identity, Tier, parse_id
from mdstudio_core.domain.notifications import Delivery, DeliveryStatus, Subscription
from mdstudio_core.service_layer import consumers
from mdstudio_core.service_layer.catalog import check_page
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)
CONSUMER = "notification_sensor"
# A run's group waits for the run to end, but no longer than this (a run stuck in a dead
# worker must not silence its incidents).
MAX_HOLD = dt.timedelta(hours=1)


def subscribe(
    uow: UnitOfWork,
    identity: Identity,
    url: str,
    events: Sequence[str] | None,
    min_tier: Tier | str | None,
    settings: Settings,
) -> tuple[str, Subscription]:
    """A new webhook; the signing secret is returned here and never shown again."""
    _check_admin(identity)
    url = rules.check_url(url, settings.notify_allowed_hosts)
    if not _reachable(url, settings):
        raise InvalidInput(
            f"the destination is not allowed: {rules.host_of(url)} is or resolves to a "
            "loopback, private, link-local or other non-public address "
            "(MDSTUDIO_NOTIFY_ALLOW_PRIVATE=1 allows it)",
            field="url",
        )
    subscription = Subscription(
        id=uuid.uuid4(),
        tenant_id=identity.tenant_id,
        url=url,
        events=rules.check_event_patterns(events),
        min_tier=_tier(min_tier),
        created_at=clock.now(),
        created_by=identity.user,
        secret=secrets.token_urlsafe(32),
    )
    with uow:
        uow.notifications.subscribe(subscription)
        uow.commit()
    return subscription.secret, subscription


def _reachable(url: str, settings: Settings) -> bool:
    """Whether the address rule lets `url` through now. A name that does not resolve yet
    passes: every send resolves it again and checks what it finds."""
    if settings.notify_allow_private:
        return True
    try:
        addresses = webhooks.resolve(url)
    except OSError:
        return True
    return rules.addresses_allowed(addresses)


def list_subscriptions(uow: UnitOfWork, identity: Identity) -> list[Subscription]:
    _check_admin(identity)
    with uow:
        return uow.notifications.subscriptions(identity.tenant_id)


def unsubscribe(
    uow: UnitOfWork, identity: Identity, subscription_id: uuid.UUID | str
) -> Subscription:
    _check_admin(identity)
    subscription_id = parse_id(subscription_id, "subscription_id")
    with uow:
        found = uow.notifications.subscription(identity.tenant_id, subscription_id)
        if found is None or found.unsubscribed_at is not None:
            raise NotFound(f"subscription {subscription_id} not found")
        now = clock.now()
        uow.notifications.unsubscribe(subscription_id, now)
        uow.commit()
    return replace(found, unsubscribed_at=now)


def list_deliveries(
    uow: UnitOfWork,
    identity: Identity,
    status: DeliveryStatus | str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Delivery]:
    _check_admin(identity)
    check_page(limit, offset, "offset")
    if status is not None:
        try:
            status = DeliveryStatus(status)
        except ValueError as exc:
            raise InvalidInput("not a delivery status", field="status") from exc
    with uow:
        return uow.notifications.deliveries(identity.tenant_id, status, limit, offset)


def redeliver(uow: UnitOfWork, identity: Identity, delivery_id: uuid.UUID | str) -> Delivery:
    """Send a delivery again (a dead one, or one already delivered) at the next tick."""
    _check_admin(identity)
    delivery_id = parse_id(delivery_id, "delivery_id")
    with uow:
        delivery = uow.notifications.delivery(identity.tenant_id, delivery_id)
        if delivery is None:
            raise NotFound(f"delivery {delivery_id} not found")
        again = replace(
            delivery, status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=clock.now()
        )
        uow.notifications.save_delivery(again)
        uow.commit()
    return again


# -- the sensor's side ------------------------------------------------------------------------


def collect(uow: UnitOfWork, max_events: int, settings: Settings) -> consumers.Pass:
    """Turn the outbox events after the cursor into deliveries, one per subscription and group
    (a profiling run's events together), and advance the cursor: one transaction
    (`consumers.consume`, which also sets aside an event that keeps failing)."""
    by_tenant: dict[uuid.UUID, list[Subscription]] | None = None
    now = clock.now()

    def deliver(uow: UnitOfWork, event: Event, key: str | None) -> None:
        nonlocal by_tenant
        if by_tenant is None:
            by_tenant = {}
            for subscription in uow.notifications.subscriptions():
                by_tenant.setdefault(subscription.tenant_id, []).append(subscription)
        for subscription in by_tenant.get(event.tenant_id, ()):
            if subscription.wants(event):
                _add_to_delivery(uow, subscription, event, now, key)

    return consumers.consume(uow, CONSUMER, deliver, settings=settings, max_events=max_events)


def would_deliver(uow: UnitOfWork, events: Sequence[Event], key: str) -> list[dict[str, object]]:
    """What `collect` would deliver for `events` under `key` (a replay's dry run): one line
    per subscription and group, with the events it would carry."""
    with uow:
        subscriptions = uow.notifications.subscriptions()
    planned: dict[tuple[uuid.UUID, str], dict[str, object]] = {}
    for event in events:
        for subscription in subscriptions:
            if subscription.tenant_id == event.tenant_id and subscription.wants(event):
                group = f"{key}:{rules.group_key(event)}"
                line = planned.setdefault(
                    (subscription.id, group),
                    {
                        "subscription_id": str(subscription.id),
                        "host": subscription.host,
                        "tenant_id": str(subscription.tenant_id),
                        "group_key": group,
                        "event_ids": [],
                    },
                )
                line["event_ids"].append(event.id)  # type: ignore[attr-defined]
    return list(planned.values())


def _add_to_delivery(
    uow: UnitOfWork,
    subscription: Subscription,
    event: Event,
    now: dt.datetime,
    key: str | None = None,
) -> None:
    """Join the group's delivery while it is untried; a late event of a group already sent
    goes in a delivery of its own. A replayed or retried event's group is its replay's or
    retry's (`replay:<id>:run:<run id>`): delivered again once per replay."""
    group = rules.group_key(event) if key is None else f"{key}:{rules.group_key(event)}"
    record = orjson.loads(orjson.dumps(event))
    open_delivery = uow.notifications.open_delivery(subscription.id, group)
    if open_delivery is not None:
        uow.notifications.save_delivery(
            replace(open_delivery, events=[*open_delivery.events, record])
        )
        return
    if uow.notifications.exists(subscription.id, group):  # tried already
        group = f"{group}/{event.id}"
    uow.notifications.add_delivery(
        Delivery(
            id=uuid.uuid4(),
            tenant_id=subscription.tenant_id,
            subscription_id=subscription.id,
            group_key=group,
            events=[record],
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


@dataclass(frozen=True)
class SendReport:
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    held: int = 0


def send_due(
    uow_factory: Callable[[], UnitOfWork],
    settings: Settings,
    *,
    held: Callable[[str], bool] = lambda _group: False,
    budget_seconds: float = 20.0,
    limit: int = 200,
) -> SendReport:
    """Post the deliveries that are due, within a time budget (a sensor tick stays short).
    `held(group_key)` keeps a group back while its profiling run may still add events."""
    now = clock.now()
    with uow_factory() as uow:
        due = uow.notifications.due(now, limit)
        targets = {s.id: s for s in uow.notifications.subscriptions(active_only=False)}
    counts = {"delivered": 0, "failed": 0, "dead": 0, "held": 0}
    deadline = time.monotonic() + budget_seconds
    for delivery in due:
        if time.monotonic() > deadline:
            break
        subscription = targets.get(delivery.subscription_id)
        if subscription is None or subscription.unsubscribed_at is not None:
            continue  # nobody to tell any more; it stays as it was, visible
        waited = now - delivery.created_at
        if delivery.attempts == 0 and waited < MAX_HOLD and held(delivery.group_key.split("/")[0]):
            counts["held"] += 1
            continue
        outcome = _attempt(delivery, subscription, settings)
        with uow_factory() as uow:
            if uow.notifications.save_delivery(outcome, expected_attempts=delivery.attempts):
                uow.commit()
                counts[outcome.status.value] += 1
    return SendReport(**counts)


def _attempt(delivery: Delivery, subscription: Subscription, settings: Settings) -> Delivery:
    now = clock.now()
    result = _send(delivery, subscription, settings, int(now.timestamp()))
    attempts = delivery.attempts + 1
    if result.ok:
        return replace(
            delivery,
            status=DeliveryStatus.DELIVERED,
            attempts=attempts,
            delivered_at=now,
            last_status_code=result.status_code,
            last_error=None,
        )
    # A refused destination is dead at once: trying again would not change where it points.
    dead = result.refused or attempts >= settings.notify_max_attempts
    wait = rules.backoff(attempts, dt.timedelta(seconds=settings.notify_backoff_seconds))
    return replace(
        delivery,
        status=DeliveryStatus.DEAD if dead else DeliveryStatus.FAILED,
        attempts=attempts,
        next_attempt_at=now + wait,
        last_status_code=result.status_code,
        last_error=result.error,
    )


def _send(
    delivery: Delivery, subscription: Subscription, settings: Settings, timestamp: int
) -> webhooks.PostResult:
    """The destination judged as the rules stand now (the allow-list, then the address rule
    on what the host resolves to now), then the signed POST to one of those very addresses."""
    url, host = subscription.url, subscription.host
    try:
        rules.check_url(url, settings.notify_allowed_hosts)
    except InvalidInput as refused:
        return _refused(host, refused.reason)
    try:
        addresses = webhooks.resolve(url)
    except OSError as exc:
        logger.warning("webhook to %s failed: %s", host, type(exc).__name__)
        return webhooks.PostResult(False, None, f"{type(exc).__name__} resolving {host}")
    if not settings.notify_allow_private and not rules.addresses_allowed(addresses):
        return _refused(host, rules.DESTINATION_REFUSED)
    body = orjson.dumps(rules.message(delivery))
    headers = {
        rules.DELIVERY_HEADER: str(delivery.id),
        rules.TIMESTAMP_HEADER: str(timestamp),
        rules.SIGNATURE_HEADER: rules.signature(subscription.secret, timestamp, body),
    }
    return webhooks.post(url, addresses, body, headers, settings.notify_timeout_seconds)


def _refused(host: str, why: str) -> webhooks.PostResult:
    logger.warning("webhook to %s refused: %s", host, why)
    return webhooks.PostResult(False, None, why, refused=True)


def _check_admin(identity: Identity) -> None:
    if TENANT_ADMIN_ROLE not in identity.roles:
        raise Forbidden(f"role {TENANT_ADMIN_ROLE} is required to manage notifications")


def _tier(value: Tier | str | None) -> Tier | None:
    if value is None or isinstance(value, Tier):
        return value
    try:
        return Tier(value)
    except ValueError as exc:
        raise InvalidInput("must be tier1, tier2 or tier3", field="min_tier") from exc
