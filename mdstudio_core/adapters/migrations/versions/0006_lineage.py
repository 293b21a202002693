"""Lineage: tenant names (asset keys and groups in Dagster) and each KPI's trust state.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mdm_tenant",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id"),
        sa.UniqueConstraint("name", name="uq_mdm_tenant_name"),
    )
    op.create_table(
        "mdm_kpi_trust",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("canonical_key", sa.String(length=200), nullable=False),
        sa.Column("trust_score", sa.Float(), nullable=True),
        sa.Column("weakest_input", sa.String(length=200), nullable=True),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("impacted", sa.Boolean(), nullable=False),
        sa.Column("below_streak", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "canonical_key"),
    )


def downgrade() -> None:
    op.drop_table("mdm_kpi_trust")
    op.drop_table("mdm_tenant")
