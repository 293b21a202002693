"""Builders of valid requests and a way to prove that nothing in the store changed."""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain.events import Event, NewEvent
from mdstudio_core.domain.incidents import Incident, IncidentStatus
from mdstudio_core.domain.model import (
    EntityStatus,
    EntityType,
    Identity,
    Tier,
    Trigger,
    entity_urn,
)
from mdstudio_core.domain.notifications import Delivery, DeliveryStatus
from mdstudio_core.domain.quality import ProfileResult, StoredProfile
from mdstudio_core.service_layer import approvals
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

STEWARD = "metadata_steward"
KERNEL_OWNER = "kernel_owner"
T0 = dt.datetime(2026, 2, 1, 8, tzinfo=dt.UTC)  # a fixed time for rows written directly
SUBSCRIPTION = uuid.UUID(int=100)
# The settings of a deployment that sets no variable.
SETTINGS = Settings()


def person(tenant: uuid.UUID, user: str, *roles: str) -> Identity:
    return Identity(tenant_id=tenant, user=user, roles=frozenset(roles))


def unnamed_label(tenant: uuid.UUID) -> str:
    """An unnamed tenant's label in Dagster, as the README spells it: `t_` and its id's groups,
    last first."""
    return "t_" + "_".join(reversed(str(tenant).split("-")))


def metadata_request(
    key: str = "finance.revenue.gross_amount",
    tier: str = "tier1",
    lane: str | None = None,
    binding: dict[str, Any] | bool | None = True,
    **fields: Any,
) -> dict[str, Any]:
    if binding is True:
        binding = {
            "source": "warehouse",
            "schema": "sales",
            "table": "orders",
            "columns": [{"name": "gross_amount", "nullable": False, "min": 0}],
        }
    payload = {
        "canonical_key": key,
        "label": "Gross amount",
        "description": "Order revenue before discounts and tax",
        "tier": tier,
        "domain": "finance",
        "owner": "finance-data",
        "data_type": "decimal(18,2)",
        **fields,
    }
    if binding:
        payload["binding"] = binding
    if lane == "draft":  # the draft lane only keeps drafts
        payload.setdefault("status", "draft")
    return {
        "entity_type": "GLOBAL_METADATA",
        "entity_key": key,
        "tier": tier,
        "lane": lane or ("kernel" if tier == "tier1" else "governed"),
        "payload": payload,
    }


def kpi_request(key: str = "finance.kpi.gross_margin", tier: str = "tier2") -> dict[str, Any]:
    return {
        "entity_type": "KPI",
        "entity_key": key,
        "tier": tier,
        "lane": "kernel" if tier == "tier1" else "governed",
        "payload": {
            "canonical_key": key,
            "name": "Gross margin",
            "expression": "(gross_amount - cost_amount) / gross_amount",
            "depends_on": ["finance.revenue.gross_amount", "finance.cost.cost_amount"],
            "tier": tier,
            "owner": "finance-data",
        },
    }


def business_rule_request(key: str = "finance.rule.no_negative_revenue") -> dict[str, Any]:
    return {
        "entity_type": "BUSINESS_RULE",
        "entity_key": key,
        "tier": "tier2",
        "lane": "governed",
        "payload": {
            "canonical_key": key,
            "name": "No negative revenue",
            "expression": "gross_amount >= 0",
            "applies_to": ["finance.revenue.gross_amount"],
            "owner": "finance-data",
        },
    }


def glossary_request(term: str = "Gross Revenue") -> dict[str, Any]:
    return {
        "entity_type": "GLOSSARY",
        "tier": "tier3",
        "lane": "governed",
        "payload": {
            "term": term,
            "definition": "Revenue before discounts, returns and tax.",
            "synonyms": ["Gross Sales"],
            "related_keys": ["finance.revenue.gross_amount"],
        },
    }


def changed(request: dict[str, Any], **payload_fields: Any) -> dict[str, Any]:
    new = copy.deepcopy(request)
    new["payload"].update(payload_fields)
    return new


def store_snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to compare before and after a refused request."""
    with engine.connect() as connection:
        return {
            table.name: sorted(
                (tuple(str(v) for v in row) for row in connection.execute(sa.select(table))),
            )
            for table in tables.metadata.sorted_tables
        }


def event_types(engine: Engine, correlation_id: uuid.UUID | None = None) -> list[str]:
    query = sa.select(tables.events.c.type).order_by(tables.events.c.id)
    if correlation_id is not None:
        query = query.where(tables.events.c.correlation_id == correlation_id)
    with engine.connect() as connection:
        return list(connection.execute(query).scalars())


def create_table(url: str, name: str, rows: list[dict[str, Any]], **columns: Any) -> None:
    """A warehouse table `name` with `columns` (name=SQLAlchemy type) holding `rows`."""
    engine = sa.create_engine(url)
    table = sa.Table(name, sa.MetaData(), *[sa.Column(c, t) for c, t in columns.items()])
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(table.insert(), rows)
    engine.dispose()


# `^(a+)+$` over a's and one mismatch: Python's `re` backtracks 2^n times, RE2 is linear.
BACKTRACKING_CODES = ["a" * 40, "a" * 39 + "!", "b" * 40, None, "a" * 40]
BACKTRACKING_BINDING = {
    "source": "wh",
    "table": "codes",
    "columns": [{"name": "code", "pattern": "^(a+)+$", "nullable": True}],
}


def create_codes(url: str) -> None:
    """The table `BACKTRACKING_BINDING` is bound to: 4 codes, 3 distinct, 2 valid."""
    create_table(url, "codes", [{"code": c} for c in BACKTRACKING_CODES], code=sa.Text())


# A pattern PostgreSQL is slow on (its DFA thrashes over random hex: about 0.1 s per 200,000
# characters), over 40 rows of 192,000 characters: seconds, unless the timeout stops it.
SLOW_PATTERN_BINDING = {
    "source": "wh",
    "table": "blobs",
    "columns": [{"name": "body", "pattern": "(0|1)[0-9a-f]{200}x"}],
}


def create_blobs(url: str) -> None:
    """The PostgreSQL table `SLOW_PATTERN_BINDING` is bound to."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE blobs AS SELECT g AS id, (SELECT string_agg(md5(random()::text || g "
            "|| k), '') FROM generate_series(1, 6000) k) AS body FROM generate_series(1, 40) g"
        )
    engine.dispose()


def approve_metadata(engine: Engine, tenant: uuid.UUID, **request: Any) -> uuid.UUID:
    """Submit `metadata_request(**request)` as alice and approve it as bob holding the role it
    needs: the entity is live. Returns the approval's id."""
    pending = approvals.submit(
        UnitOfWork(engine), person(tenant, "alice"), metadata_request(**request), SETTINGS
    )
    decider = person(tenant, "bob", pending.required_role)
    return approvals.approve(UnitOfWork(engine), decider, pending.id, None, SETTINGS).id


# The demo orders table (demo/warehouse.py), by hand, as `DEMO_BINDING` checks it:
#   order_id unique: n=20 nn=20 d=19 -> completeness 1, uniqueness 0.95
#       column = (0.4*1 + 0.3*0.95) / 0.7 = 0.685/0.7
#   gross_amount min 0: nn=17, valid=15 -> completeness 0.85, validity 15/17
#       column = (0.4*0.85 + 0.3*15/17) / 0.7
#   currency allowed EUR/USD/GBP: nn=20, valid=16 ("usd", "XXX", "eur" and "" fail)
#       column = (0.4*1 + 0.3*16/20) / 0.7
# and the table's score is the mean of its columns': `DEMO_SCORE`.
_DEMO_COLUMNS: list[dict[str, Any]] = [
    {"name": "order_id", "unique": True},
    {"name": "gross_amount", "min": 0},
    {"name": "currency", "allowed_values": ["EUR", "USD", "GBP"]},
]


def demo_binding(
    table: str = "orders", columns: list[dict[str, Any]] | None = None, **fields: Any
) -> dict[str, Any]:
    """A field bound to the demo warehouse's `table` on `columns` (default: the three checked
    columns of the orders table), with `fields` added; a new dict each call, so a test may change
    it without changing another's."""
    chosen = _DEMO_COLUMNS if columns is None else columns
    return {"source": "demo", "table": table, "columns": copy.deepcopy(chosen), **fields}


DEMO_BINDING = demo_binding()
DEMO_SCORE = 91.89


def stored_profile(
    tenant: uuid.UUID, key: str, at: dt.datetime, score: float | None = 90.0
) -> StoredProfile:
    """A saved profile of `key`, taken at `at` in a run of its own."""
    return StoredProfile(
        id=uuid.uuid4(),
        tenant_id=tenant,
        entity_urn=entity_urn(tenant, key),
        canonical_key=key,
        quality_score=score,
        completeness=None,
        uniqueness=None,
        validity=None,
        row_count=1,
        columns=[],
        score_note=None,
        details={},
        trigger="manual",
        approval_id=None,
        run_id=str(uuid.uuid4()),
        sql=None,
        sample=None,
        duration_ms=1,
        created_at=at,
    )


def profile_result(
    key: str = "finance.revenue.gross_amount", score: float | None = 90.0, **fields: Any
) -> ProfileResult:
    """A scheduled profile of `key` on the demo orders table, measured now, as a run hands it to
    be saved; `fields` override the rest."""
    return ProfileResult(
        **{
            "canonical_key": key,
            "source": "demo",
            "table": "orders",
            "quality_score": score,
            "completeness": None,
            "uniqueness": None,
            "validity": None,
            "row_count": 1,
            "columns": [],
            "trigger": Trigger.SCHEDULE,
            "sql": "",
            "duration_ms": 1,
            "profiled_at": dt.datetime.now(dt.UTC),
            **fields,
        }
    )


def measured(result: ProfileResult) -> tuple[Any, ...]:
    """Everything a profile measured and scored (not how it was taken), to compare two."""
    return (
        result.row_count,
        result.quality_score,
        result.completeness,
        result.uniqueness,
        result.validity,
        [
            (c.name, c.n, c.non_null, c.distinct, c.valid, c.min, c.max, c.score)
            for c in result.columns
        ],
    )


def bound_field(
    uow: UnitOfWork,
    tenant: uuid.UUID,
    key: str,
    binding: dict[str, Any],
    *,
    tier: str = "tier1",
    status: str = "active",
    owner: str = "o",
    by: str = "alice",
    at: dt.datetime = T0,
) -> None:
    """A bound integer field written straight to the catalog (many of them would take minutes
    through approvals); the caller commits."""
    uow.entities.insert(
        EntityType.GLOBAL_METADATA,
        tenant,
        uuid.uuid4(),
        {
            "canonical_key": key,
            "label": key,
            "description": "",
            "tier": tier,
            "domain": "finance",
            "owner": owner,
            "data_type": "integer",
            "status": status,
            "binding": binding,
        },
        by,
        at,
    )


def add_entity(
    uow: UnitOfWork,
    entity_type: EntityType,
    tenant: uuid.UUID,
    key: str,
    status: EntityStatus = EntityStatus.ACTIVE,
    binding: dict[str, Any] | None = DEMO_BINDING,
    tier: Tier = Tier.TIER2,
) -> None:
    """A live field or KPI written straight to the catalog, as an approval would leave it."""
    if entity_type is EntityType.KPI:
        fields = {"name": key, "expression": "a / b", "depends_on": ["finance.a", "finance.b"]}
    else:
        fields = {"label": key, "domain": "finance", "data_type": "int", "binding": binding}
    state = {"canonical_key": key, "tier": tier.value, "status": status.value, **fields}
    uow.entities.insert(entity_type, tenant, uuid.uuid4(), state, "ana", T0)


def make_event(
    event_type: str,
    tenant: uuid.UUID,
    key: str,
    payload: dict[str, Any],
    *,
    actor: str = "mdstudio",
    occurred_at: dt.datetime | None = None,
    entity_type: EntityType = EntityType.GLOBAL_METADATA,
) -> NewEvent:
    """An event about `key` for the outbox, with a correlation id of its own; it happens now
    unless `occurred_at` says when."""
    return NewEvent(
        type=event_type,
        tenant_id=tenant,
        entity_type=entity_type,
        entity_key=key,
        correlation_id=uuid.uuid4(),
        actor=actor,
        occurred_at=occurred_at or dt.datetime.now(dt.UTC),
        payload=payload,
    )


def stored_event(
    event_id: int, event_type: str, tenant: uuid.UUID, key: str, payload: dict[str, Any], **new: Any
) -> Event:
    """`make_event`'s event as the outbox hands it back, numbered `event_id`."""
    return Event(id=event_id, **vars(make_event(event_type, tenant, key, payload, **new)))


def incident(
    tenant: uuid.UUID,
    status: IncidentStatus,
    opened_at: dt.datetime = T0,
    *,
    tier: Tier = Tier.TIER1,
    key: str = "finance.revenue.gross_amount",
) -> Incident:
    """An incident of `key`; a resolved one was resolved an hour after it opened."""
    resolved = status is IncidentStatus.RESOLVED
    return Incident(
        id=uuid.uuid4(),
        tenant_id=tenant,
        canonical_key=key,
        tier=tier,
        status=status,
        opened_at=opened_at,
        opening_profile_id=None,
        last_score=50.0,
        resolved_by="bob" if resolved else None,
        resolved_at=opened_at + dt.timedelta(hours=1) if resolved else None,
    )


def delivery(
    tenant: uuid.UUID,
    n: int,
    *,
    subscription_id: uuid.UUID = SUBSCRIPTION,
    group_key: str | None = None,
    status: DeliveryStatus = DeliveryStatus.PENDING,
    attempts: int = 0,
    next_attempt_at: dt.datetime = T0,
    created_at: dt.datetime = T0,
) -> Delivery:
    """Delivery number `n` (its id is `UUID(int=n)`), of run `n` unless `group_key` is given."""
    return Delivery(
        id=uuid.UUID(int=n),
        tenant_id=tenant,
        subscription_id=subscription_id,
        group_key=group_key or f"run:{n}",
        events=[{"n": n}],
        status=status,
        attempts=attempts,
        next_attempt_at=next_attempt_at,
        created_at=created_at,
    )
