"""The tables keyed by tenant: the catalog, its requests and profiles, the outbox, access and
notifications."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)

from mdstudio_core.adapters.tables.base import EventId, Json, UtcDateTime, entity_columns, metadata
from mdstudio_core.domain.model import EntityType

approvals = Table(
    "mdm_approval",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("entity_type", String(32), nullable=False),
    Column("entity_id", Uuid),
    Column("entity_key", String(200)),
    Column("tier", String(16), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("payload", Json, nullable=False),
    Column("current_state", Json),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("decision_reason", Text),
    Column("requested_by", String(200), nullable=False),
    Column("decided_by", String(200)),
    Column("requested_at", UtcDateTime, server_default=text("CURRENT_TIMESTAMP")),
    Column("decided_at", UtcDateTime),
    Column("required_role", String(100), nullable=False),
    # Distinct approvers holding the role that must approve (the policy's `--approvals`).
    Column("required_approvals", Integer, nullable=False, server_default="1"),
    # When `approval.overdue` was written (once per request; see service_layer/deadlines.py).
    Column("overdue_at", UtcDateTime),
    # A page of the inbox, newest first with the id as tie-break, read from the index alone
    # (migration 0008): with a status filter, and without one.
    Index("ix_mdm_approval_inbox", "tenant_id", "status", "requested_at", "id"),
    Index("ix_mdm_approval_recent", "tenant_id", "requested_at", "id"),
    Index("ix_mdm_approval_entity", "tenant_id", "entity_type", "entity_key"),
    # The deadline sensor's scan: pending requests not yet marked overdue, oldest first.
    Index(
        "ix_mdm_approval_due",
        "tier",
        "requested_at",
        postgresql_where=text("status = 'pending' AND overdue_at IS NULL"),
        sqlite_where=text("status = 'pending' AND overdue_at IS NULL"),
    ),
)

# The items of a change set (an `mdm_approval` row of entity type CHANGE_SET): ordinary
# requests, numbered from 1, decided together by the set's decision.
change_set_items = Table(
    "mdm_change_set_item",
    metadata,
    Column("change_set_id", Uuid, primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("entity_type", String(32), nullable=False),
    Column("entity_id", Uuid),
    Column("entity_key", String(200), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("payload", Json, nullable=False),
    Column("current_state", Json),
    Column("required_role", String(100), nullable=False),
)

# Endorsements of requests that need more than one approver: one per approver and request
# (the primary key), so an approver endorsing twice is refused by the store too.
approval_endorsements = Table(
    "mdm_approval_endorsement",
    metadata,
    Column("approval_id", Uuid, primary_key=True),
    Column("endorsed_by", String(200), primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("endorsed_at", UtcDateTime, nullable=False),
    Column("reason", Text),
)

global_metadata = Table(
    "mdm_global_metadata",
    metadata,
    *entity_columns(),
    Column("label", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("domain", String(200), nullable=False),
    Column("data_type", String(50), nullable=False),
    Column("binding", Json),
    UniqueConstraint("tenant_id", "canonical_key", name="uq_mdm_global_metadata_key"),
)

kpis = Table(
    "mdm_kpi",
    metadata,
    *entity_columns(),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("expression", Text, nullable=False),
    Column("depends_on", Json, nullable=False),
    UniqueConstraint("tenant_id", "canonical_key", name="uq_mdm_kpi_key"),
)

business_rules = Table(
    "mdm_business_rule",
    metadata,
    *entity_columns(),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("expression", Text, nullable=False),
    Column("applies_to", Json, nullable=False),
    Column("severity", String(16), nullable=False),
    UniqueConstraint("tenant_id", "canonical_key", name="uq_mdm_business_rule_key"),
)

glossary = Table(
    "mdm_glossary",
    metadata,
    *entity_columns(),
    Column("term", String(200), nullable=False),
    Column("definition", Text, nullable=False),
    Column("synonyms", Json, nullable=False),
    Column("related_keys", Json, nullable=False),
    UniqueConstraint("tenant_id", "canonical_key", name="uq_mdm_glossary_key"),
)

profiles = Table(
    "mdm_profile",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("entity_urn", String(300), nullable=False),
    Column("canonical_key", String(200), nullable=False),
    Column("quality_score", Float),
    Column("completeness", Float),
    Column("uniqueness", Float),
    Column("validity", Float),
    Column("row_count", BigInteger),
    Column("columns", Json),
    Column("score_note", Text),
    Column("details", Json),
    Column("trigger", String(32)),
    Column("approval_id", Uuid),
    Column("run_id", String(64)),
    Column("sql", Text),
    Column("sample", Json),
    Column("duration_ms", Integer),
    Column("created_at", UtcDateTime, nullable=False),
    # How the profile was taken (migration 0011): `full` or `incremental`, the window it read
    # (ISO 8601 for times), the rows its statements read, and why a full one ran.
    Column("mode", String(16)),
    Column("watermark_before", String(100)),
    Column("watermark_after", String(100)),
    Column("rows_read", BigInteger),
    Column("full_reason", Text),
    Index("ix_mdm_profile_entity", "tenant_id", "entity_urn", "created_at"),
    Index("ix_mdm_profile_key", "tenant_id", "canonical_key", "created_at"),
    # Saving is idempotent per run: a retried run finds its profile already there.
    Index("uq_mdm_profile_run", "run_id", "entity_urn", unique=True),
)

# What an incremental profile keeps of a table between passes (`domain.incremental.TableState`),
# per tenant; `version` makes a save a compare-and-set. `schema_name` is '' for a binding that
# names no schema.
profile_states = Table(
    "mdm_profile_state",
    metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("source", String(63), primary_key=True),
    Column("schema_name", String(63), primary_key=True),
    Column("table_name", String(63), primary_key=True),
    Column("state", Json, nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Each day's counts and score of a field bound with `incremental.partition: day`
# (`mdstudio profiles days`), replaced whenever a pass reads that day again.
profile_days = Table(
    "mdm_profile_day",
    metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("canonical_key", String(200), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("row_count", BigInteger, nullable=False),
    Column("quality_score", Float),
    Column("columns", Json, nullable=False),
    Column("profile_id", Uuid),
    Column("updated_at", UtcDateTime, nullable=False),
)

events = Table(
    "mdm_event",
    metadata,
    Column("id", EventId, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("tenant_id", Uuid, nullable=False),
    Column("entity_type", String(32), nullable=False),
    Column("entity_key", String(200), nullable=False),
    Column("correlation_id", Uuid, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("payload", Json, nullable=False),
    Index("ix_mdm_event_tenant", "tenant_id", "id"),
    Index("ix_mdm_event_entity", "tenant_id", "entity_key", "id"),
    sqlite_autoincrement=True,
)

approval_policies = Table(
    "mdm_approval_policy",
    metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("lane", String(16), primary_key=True),
    Column("tier", String(16), primary_key=True),
    Column("required_role", String(100), nullable=False),
    # Distinct approvers a request decided by this cell needs (`policy set --approvals`).
    Column("approvals", Integer, nullable=False, server_default="1"),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
)

# API bearer tokens. Only the SHA-256 of a token is stored: a leaked table grants nothing. The
# token fixes tenant, user and roles; `revoked_at` and `expires_at` end it.
api_tokens = Table(
    "mdm_api_token",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("tenant_id", Uuid, nullable=False),
    Column("user_name", String(200), nullable=False),
    Column("roles", Json, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
    UniqueConstraint("token_hash", name="uq_mdm_api_token_hash"),
    Index("ix_mdm_api_token_tenant", "tenant_id", "created_at"),
)

# Steward console sessions. The cookie carries an opaque id; only its SHA-256 is stored (a
# leaked table opens no session). A session lives no longer than its token, and only while the
# token is live: revoking the token ends its sessions. `last_seen_at` (written at most once a
# minute) ends a session left idle.
console_sessions = Table(
    "mdm_console_session",
    metadata,
    Column("session_hash", String(64), primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("token_id", Uuid, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Index("ix_mdm_console_session_token", "token_id"),
)


# The answers of requests sent with an `Idempotency-Key`, per tenant: a retry with the same key
# gets the stored answer instead of doing the work again. The row is written in the transaction
# that does the work, so a committed key always has its answer; a second request with the key
# waits on the first's uncommitted row (PostgreSQL) or the write lock (SQLite). Kept until
# `expires_at` (`MDSTUDIO_IDEMPOTENCY_KEY_HOURS` after it was first used), then purged.
idempotency_keys = Table(
    "mdm_idempotency_key",
    metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("idempotency_key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status_code", Integer),
    Column("response_body", LargeBinary),
    Column("location", String(500)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_mdm_idempotency_key_expiry", "expires_at"),
)

# Quality incidents: at most one that is not resolved per entity (a partial unique index, which
# both backends have), so two runs judging one entity at once cannot open two.
quality_incidents = Table(
    "mdm_quality_incident",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("canonical_key", String(200), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("opening_profile_id", Uuid),
    Column("last_score", Float),
    Column("acknowledged_by", String(200)),
    Column("acknowledged_at", UtcDateTime),
    Column("resolved_by", String(200)),
    Column("resolved_at", UtcDateTime),
    Column("resolution", Text),
    Column("previous_incident_id", Uuid),
    Index("ix_mdm_quality_incident_tenant", "tenant_id", "status", "opened_at"),
    Index(
        "uq_mdm_quality_incident_active",
        "tenant_id",
        "canonical_key",
        unique=True,
        postgresql_where=text("status <> 'resolved'"),
        sqlite_where=text("status <> 'resolved'"),
    ),
)

# Webhook subscriptions. The signing secret is kept (a delivery signs with it) and shown once.
notification_subscriptions = Table(
    "mdm_notification_subscription",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("url", Text, nullable=False),
    Column("events", Json, nullable=False),
    Column("min_tier", String(16)),
    Column("secret", String(100), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("unsubscribed_at", UtcDateTime),
    Index("ix_mdm_notification_subscription_tenant", "tenant_id", "created_at"),
)

# One delivery per subscription and group of events (a profiling run's, or one event's): its
# id is the receiver's idempotency key; attempts, status and the last error (never a secret).
notification_deliveries = Table(
    "mdm_notification_delivery",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Uuid, nullable=False),
    Column("subscription_id", Uuid, nullable=False),
    Column("group_key", String(200), nullable=False),
    Column("events", Json, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", Text),
    Column("last_status_code", Integer),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    UniqueConstraint("subscription_id", "group_key", name="uq_mdm_notification_delivery_group"),
    Index("ix_mdm_notification_delivery_due", "status", "next_attempt_at"),
    Index("ix_mdm_notification_delivery_tenant", "tenant_id", "created_at"),
)


# A tenant's name: its asset keys and asset group in Dagster (`mdstudio tenants name`).
tenants = Table(
    "mdm_tenant",
    metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("name", String(63), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
    UniqueConstraint("name", name="uq_mdm_tenant_name"),
)

# Each KPI's last computed trust and where its impact hysteresis stands (`impacted`, and how
# many computations in a row fell below the tier minimum while not impacted).
kpi_trust = Table(
    "mdm_kpi_trust",
    metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("canonical_key", String(200), primary_key=True),
    Column("trust_score", Float),
    Column("weakest_input", String(200)),
    Column("inputs", Json, nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
    Column("impacted", Boolean, nullable=False),
    Column("below_streak", Integer, nullable=False),
)


ENTITY_TABLES: dict[EntityType, Table] = {
    EntityType.GLOBAL_METADATA: global_metadata,
    EntityType.KPI: kpis,
    EntityType.BUSINESS_RULE: business_rules,
    EntityType.GLOSSARY: glossary,
}
