"""The event stream at scale: scheduled profiling passes planned a page per tick.

Revision ID: 0012
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSONB on PostgreSQL, JSON text elsewhere (as in mdstudio_core.adapters.tables).
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision = "0012"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mdm_profile_pass",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("schedule", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("slot", sa.String(length=32), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("planned_through", JSON, nullable=True),
        sa.Column("tables_planned", sa.Integer(), server_default="0", nullable=False),
        sa.Column("runs_requested", sa.Integer(), server_default="0", nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("schedule", "slot", name="uq_mdm_profile_pass_slot"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("mdm_profile_pass")
