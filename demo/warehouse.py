"""The demo's own warehouse: a SQLite file with an `orders` table that has known defects.

20 orders: one duplicated order id, gross amounts with 3 missing and 2 negative values, and
currencies with 4 codes outside EUR/USD/GBP. `make demo` binds a tier1 field to it. And 12
`payments`, loaded every five hours from 2026-01-05 (one negative amount in four), which the demo
binds incrementally (`binding.incremental`) and appends to.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

ORDERS = [
    # order_id, gross_amount, currency, customer_email
    (1, 120.0, "EUR", "ana@example.com"),
    (2, 80.5, "EUR", "bo@example.com"),
    (3, None, "USD", None),
    (4, 42.0, "usd", "cy@example"),
    (5, -15.0, "EUR", "di@example.com"),
    (6, 300.0, "GBP", "ed@example.com"),
    (7, None, "XXX", None),
    (8, 99.9, "EUR", "fa@example.com"),
    (9, 12.0, "EUR", "gu@example.com"),
    (10, 7.5, "USD", "ha@example.com"),
    (10, 7.5, "USD", "ha@example.com"),
    (12, None, "EUR", "ib@example.com"),
    (13, -3.0, "eur", "jo@example.com"),
    (14, 55.0, "GBP", "ka@example.com"),
    (15, 61.0, "EUR", None),
    (16, 18.0, "", "lu@example.com"),
    (17, 240.0, "USD", "mo@example.com"),
    (18, 33.3, "EUR", "ni@example.com"),
    (19, 19.0, "GBP", "ol@example.com"),
    (20, 88.0, "EUR", "pa@example.com"),
]


# A table loaded daily: payment_id, order_id, amount, loaded_at (the load timestamp).
LOADED = dt.datetime(2026, 1, 5, 6)
PAYMENTS = [
    (i, 1 + i % 20, [120.0, 80.5, 42.0, -15.0][i % 4], LOADED + dt.timedelta(hours=5 * i))
    for i in range(1, 13)
]


def build(path: Path) -> str:
    """(Re)create the demo warehouse at `path`; returns its SQLAlchemy URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    orders = sa.Table(
        "orders",
        metadata,
        sa.Column("order_id", sa.Integer),
        sa.Column("gross_amount", sa.Float),
        sa.Column("currency", sa.String(3)),
        sa.Column("customer_email", sa.String(200)),
    )
    payments = _payments(metadata)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            payments.insert(),
            [
                dict(zip(("payment_id", "order_id", "amount", "loaded_at"), row, strict=True))
                for row in PAYMENTS
            ],
        )
        connection.execute(
            orders.insert(),
            [
                dict(
                    zip(
                        ("order_id", "gross_amount", "currency", "customer_email"), row, strict=True
                    )
                )
                for row in ORDERS
            ],
        )
    engine.dispose()
    return url


def _payments(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "payments",
        metadata,
        sa.Column("payment_id", sa.Integer),
        sa.Column("order_id", sa.Integer),
        sa.Column("amount", sa.Float),
        sa.Column("loaded_at", sa.DateTime, index=True),
    )


def load_payments(path: Path, count: int) -> None:
    """Append `count` payments, loaded six hours after the last ones (the next load)."""
    engine = sa.create_engine(f"sqlite:///{path}")
    payments = _payments(sa.MetaData())
    with engine.begin() as connection:
        last, at = connection.execute(
            sa.select(sa.func.max(payments.c.payment_id), sa.func.max(payments.c.loaded_at))
        ).one()
        start = at + dt.timedelta(hours=6)
        connection.execute(
            payments.insert(),
            [
                {
                    "payment_id": last + i,
                    "order_id": i,
                    "amount": 10.0 * i,
                    "loaded_at": start + dt.timedelta(minutes=i),
                }
                for i in range(1, count + 1)
            ],
        )
    engine.dispose()
