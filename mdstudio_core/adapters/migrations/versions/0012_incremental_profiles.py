"""Incremental profiling: how each profile was taken (mode, window, rows read, why a full one
ran), the state a table's profile keeps between passes, and each day's counts of daily tables.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mdm_profile") as batch:
        batch.add_column(sa.Column("mode", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("watermark_before", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("watermark_after", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("rows_read", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("full_reason", sa.Text(), nullable=True))
    op.create_table(
        "mdm_profile_state",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("source", sa.String(length=63), nullable=False),
        sa.Column("schema_name", sa.String(length=63), nullable=False),
        sa.Column("table_name", sa.String(length=63), nullable=False),
        sa.Column("state", JSON, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "source", "schema_name", "table_name"),
    )
    op.create_table(
        "mdm_profile_day",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("canonical_key", sa.String(length=200), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("quality_score", sa.Float(), nullable=True),
        sa.Column("columns", JSON, nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "canonical_key", "day"),
    )


def downgrade() -> None:
    op.drop_table("mdm_profile_day")
    op.drop_table("mdm_profile_state")
    with op.batch_alter_table("mdm_profile") as batch:
        batch.drop_column("full_reason")
        batch.drop_column("rows_read")
        batch.drop_column("watermark_after")
        batch.drop_column("watermark_before")
        batch.drop_column("mode")
