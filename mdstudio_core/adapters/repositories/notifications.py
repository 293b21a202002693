"""Notification subscriptions and their deliveries."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Row, Table, insert, select, update

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository
from mdstudio_core.domain.model import Tier
from mdstudio_core.domain.notifications import Delivery, DeliveryStatus, Subscription


class NotificationRepository(Repository):
    """`mdm_notification_subscription` and `mdm_notification_delivery`."""

    def subscribe(self, subscription: Subscription) -> None:
        row = dataclasses.asdict(subscription)
        row["events"] = list(subscription.events)
        row["min_tier"] = subscription.min_tier.value if subscription.min_tier else None
        self._connection.execute(insert(tables.notification_subscriptions).values(row))

    def subscription(self, tenant_id: uuid.UUID, subscription_id: uuid.UUID) -> Subscription | None:
        row = self._of_tenant(tables.notification_subscriptions, subscription_id, tenant_id)
        return _subscription(row) if row else None

    def subscriptions(
        self, tenant_id: uuid.UUID | None = None, *, active_only: bool = True
    ) -> list[Subscription]:
        """A tenant's subscriptions (every tenant's with None), oldest first."""
        column = tables.notification_subscriptions.c
        query = select(tables.notification_subscriptions).order_by(column.created_at, column.id)
        if tenant_id is not None:
            query = query.where(column.tenant_id == tenant_id)
        if active_only:
            query = query.where(column.unsubscribed_at.is_(None))
        return [_subscription(row) for row in self._connection.execute(query)]

    def unsubscribe(self, subscription_id: uuid.UUID, at: dt.datetime) -> None:
        self._connection.execute(
            update(tables.notification_subscriptions)
            .where(tables.notification_subscriptions.c.id == subscription_id)
            .values(unsubscribed_at=at)
        )

    def open_delivery(self, subscription_id: uuid.UUID, group_key: str) -> Delivery | None:
        """The group's delivery if it has not been tried yet (more events may join it)."""
        column = tables.notification_deliveries.c
        row = self._connection.execute(
            select(tables.notification_deliveries).where(
                column.subscription_id == subscription_id,
                column.group_key == group_key,
                column.status == DeliveryStatus.PENDING.value,
                column.attempts == 0,
            )
        ).first()
        return _delivery(row) if row else None

    def exists(self, subscription_id: uuid.UUID, group_key: str) -> bool:
        column = tables.notification_deliveries.c
        query = select(column.id).where(
            column.subscription_id == subscription_id, column.group_key == group_key
        )
        return self._connection.execute(query).first() is not None

    def add_delivery(self, delivery: Delivery) -> None:
        self._connection.execute(
            insert(tables.notification_deliveries).values(_delivery_row(delivery))
        )

    def save_delivery(self, delivery: Delivery, *, expected_attempts: int | None = None) -> bool:
        """Store a delivery's new state; with `expected_attempts`, only if nobody recorded
        another attempt meanwhile (compare-and-set). Whether it was stored."""
        column = tables.notification_deliveries.c
        query = update(tables.notification_deliveries).where(column.id == delivery.id)
        if expected_attempts is not None:
            query = query.where(column.attempts == expected_attempts)
        return self._connection.execute(query.values(_delivery_row(delivery))).rowcount == 1

    def delivery(self, tenant_id: uuid.UUID, delivery_id: uuid.UUID) -> Delivery | None:
        row = self._of_tenant(tables.notification_deliveries, delivery_id, tenant_id)
        return _delivery(row) if row else None

    def deliveries(
        self,
        tenant_id: uuid.UUID,
        status: DeliveryStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Delivery]:
        """A tenant's deliveries, newest first."""
        column = tables.notification_deliveries.c
        query = select(tables.notification_deliveries).where(column.tenant_id == tenant_id)
        if status is not None:
            query = query.where(column.status == status.value)
        query = query.order_by(column.created_at.desc(), column.id).limit(limit).offset(offset)
        return [_delivery(row) for row in self._connection.execute(query)]

    def due(self, now: dt.datetime, limit: int) -> list[Delivery]:
        """Deliveries to try now (every tenant's), the longest waiting first."""
        column = tables.notification_deliveries.c
        query = (
            select(tables.notification_deliveries)
            .where(
                column.status.in_([DeliveryStatus.PENDING.value, DeliveryStatus.FAILED.value]),
                column.next_attempt_at <= now,
            )
            .order_by(column.next_attempt_at, column.id)
            .limit(limit)
        )
        return [_delivery(row) for row in self._connection.execute(query)]

    def _of_tenant(self, table: Table, row_id: uuid.UUID, tenant_id: uuid.UUID) -> Row[Any] | None:
        """The row with this id, if it is the tenant's (another tenant's is not found)."""
        return self._connection.execute(
            select(table).where(table.c.id == row_id, table.c.tenant_id == tenant_id)
        ).first()


def _subscription(row: Row[Any]) -> Subscription:
    values = row._asdict()
    return Subscription(
        **values
        | {
            "events": tuple(row.events),
            "min_tier": Tier(row.min_tier) if row.min_tier else None,
        }
    )


def _delivery_row(delivery: Delivery) -> dict[str, Any]:
    return dataclasses.asdict(delivery) | {"status": delivery.status.value}


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(**row._asdict() | {"status": DeliveryStatus(row.status)})
