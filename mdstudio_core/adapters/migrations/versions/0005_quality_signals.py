"""Quality signals: incidents (one active per entity), webhook subscriptions and deliveries, and
the outbox consumers' cursors.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSONB on PostgreSQL, JSON text elsewhere (as in mdstudio_core.adapters.tables).
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mdm_quality_incident",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("canonical_key", sa.String(length=200), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opening_profile_id", sa.Uuid(), nullable=True),
        sa.Column("last_score", sa.Float(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("previous_incident_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_mdm_quality_incident_tenant",
        "mdm_quality_incident",
        ["tenant_id", "status", "opened_at"],
    )
    op.create_index(
        "uq_mdm_quality_incident_active",
        "mdm_quality_incident",
        ["tenant_id", "canonical_key"],
        unique=True,
        postgresql_where=sa.text("status <> 'resolved'"),
        sqlite_where=sa.text("status <> 'resolved'"),
    )
    op.create_table(
        "mdm_notification_subscription",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", JSON, nullable=False),
        sa.Column("min_tier", sa.String(length=16), nullable=True),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("unsubscribed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_mdm_notification_subscription_tenant",
        "mdm_notification_subscription",
        ["tenant_id", "created_at"],
    )
    op.create_table(
        "mdm_notification_delivery",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("group_key", sa.String(length=200), nullable=False),
        sa.Column("events", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "subscription_id", "group_key", name="uq_mdm_notification_delivery_group"
        ),
    )
    op.create_index(
        "ix_mdm_notification_delivery_due",
        "mdm_notification_delivery",
        ["status", "next_attempt_at"],
    )
    op.create_index(
        "ix_mdm_notification_delivery_tenant",
        "mdm_notification_delivery",
        ["tenant_id", "created_at"],
    )
    op.create_table(
        "mdm_consumer_cursor",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("last_event_id", EVENT_ID, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer"),
    )


def downgrade() -> None:
    op.drop_table("mdm_consumer_cursor")
    op.drop_index("ix_mdm_notification_delivery_tenant", table_name="mdm_notification_delivery")
    op.drop_index("ix_mdm_notification_delivery_due", table_name="mdm_notification_delivery")
    op.drop_table("mdm_notification_delivery")
    op.drop_index(
        "ix_mdm_notification_subscription_tenant", table_name="mdm_notification_subscription"
    )
    op.drop_table("mdm_notification_subscription")
    op.drop_index("uq_mdm_quality_incident_active", table_name="mdm_quality_incident")
    op.drop_index("ix_mdm_quality_incident_tenant", table_name="mdm_quality_incident")
    op.drop_table("mdm_quality_incident")
