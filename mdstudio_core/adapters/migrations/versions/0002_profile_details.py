"""Profiles: canonical key, score note, details and the run that produced them (idempotent saves).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mdm_profile") as batch:
        batch.add_column(
            sa.Column("canonical_key", sa.String(length=200), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("score_note", sa.Text(), nullable=True))
        batch.add_column(sa.Column("details", JSON, nullable=True))
        batch.add_column(sa.Column("run_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("mdm_profile") as batch:
        batch.alter_column("canonical_key", server_default=None)
    op.create_index(
        "ix_mdm_profile_key", "mdm_profile", ["tenant_id", "canonical_key", "created_at"]
    )
    op.create_index("uq_mdm_profile_run", "mdm_profile", ["run_id", "entity_urn"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_mdm_profile_run", table_name="mdm_profile")
    op.drop_index("ix_mdm_profile_key", table_name="mdm_profile")
    with op.batch_alter_table("mdm_profile") as batch:
        batch.drop_column("run_id")
        batch.drop_column("details")
        batch.drop_column("score_note")
        batch.drop_column("canonical_key")
