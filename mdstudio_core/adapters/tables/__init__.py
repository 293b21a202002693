"""The store's tables, in SQLAlchemy Core, portable across PostgreSQL and SQLite.

The Alembic migrations create exactly these (a test compares them); this package is what the
repositories query: `tenant` holds the tables keyed by tenant, `deployment` the others, `base`
the metadata and shared column types.
"""

from mdstudio_core.adapters.tables.base import EventId, Json, UtcDateTime, metadata
from mdstudio_core.adapters.tables.deployment import (
    GLOBAL_TABLES,
    console_login_attempts,
    consumer_cursors,
    dead_letters,
    event_archives,
    profile_passes,
    server_keys,
)
from mdstudio_core.adapters.tables.tenant import (
    ENTITY_TABLES,
    api_tokens,
    approval_endorsements,
    approval_policies,
    approvals,
    business_rules,
    change_set_items,
    console_sessions,
    events,
    global_metadata,
    glossary,
    idempotency_keys,
    kpi_trust,
    kpis,
    notification_deliveries,
    notification_subscriptions,
    profile_days,
    profile_states,
    profiles,
    quality_incidents,
    tenants,
)

__all__ = [
    "ENTITY_TABLES",
    "GLOBAL_TABLES",
    "EventId",
    "Json",
    "UtcDateTime",
    "api_tokens",
    "approval_endorsements",
    "approval_policies",
    "approvals",
    "business_rules",
    "change_set_items",
    "console_login_attempts",
    "console_sessions",
    "consumer_cursors",
    "dead_letters",
    "event_archives",
    "events",
    "global_metadata",
    "glossary",
    "idempotency_keys",
    "kpi_trust",
    "kpis",
    "metadata",
    "notification_deliveries",
    "notification_subscriptions",
    "profile_days",
    "profile_passes",
    "profile_states",
    "profiles",
    "quality_incidents",
    "server_keys",
    "tenants",
]
