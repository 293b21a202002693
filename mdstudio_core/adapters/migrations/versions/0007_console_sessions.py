"""Steward console sessions: the hash of the cookie's opaque id, the token it came from, expiry.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mdm_console_session",
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("token_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_hash"),
    )
    op.create_index(
        "ix_mdm_console_session_token", "mdm_console_session", ["token_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_mdm_console_session_token", table_name="mdm_console_session")
    op.drop_table("mdm_console_session")
