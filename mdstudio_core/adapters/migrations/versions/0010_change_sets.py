"""Change sets, two-person rules and deadlines: the items of a change set, endorsements of
requests that need several approvers, how many approvers each request and policy cell needs,
and when a request was marked overdue (with the index the deadline sensor scans).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# JSONB on PostgreSQL, JSON text elsewhere (as in mdstudio_core.adapters.tables).
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
PENDING_NOT_OVERDUE = "status = 'pending' AND overdue_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("mdm_approval") as table:
        table.add_column(
            sa.Column("required_approvals", sa.Integer(), nullable=False, server_default="1")
        )
        table.add_column(sa.Column("overdue_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_mdm_approval_due",
        "mdm_approval",
        ["tier", "requested_at"],
        postgresql_where=sa.text(PENDING_NOT_OVERDUE),
        sqlite_where=sa.text(PENDING_NOT_OVERDUE),
    )
    with op.batch_alter_table("mdm_approval_policy") as table:
        table.add_column(sa.Column("approvals", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "mdm_change_set_item",
        sa.Column("change_set_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("entity_type", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.Uuid()),
        sa.Column("entity_key", sa.String(length=200), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("lane", sa.String(length=16), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("current_state", JSON),
        sa.Column("required_role", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("change_set_id", "position"),
    )
    op.create_table(
        "mdm_approval_endorsement",
        sa.Column("approval_id", sa.Uuid(), nullable=False),
        sa.Column("endorsed_by", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("endorsed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.PrimaryKeyConstraint("approval_id", "endorsed_by"),
    )


def downgrade() -> None:
    op.drop_table("mdm_approval_endorsement")
    op.drop_table("mdm_change_set_item")
    with op.batch_alter_table("mdm_approval_policy") as table:
        table.drop_column("approvals")
    op.drop_index("ix_mdm_approval_due", table_name="mdm_approval")
    with op.batch_alter_table("mdm_approval") as table:
        table.drop_column("overdue_at")
        table.drop_column("required_approvals")
