"""Idempotency keys: the stored answer of each request a client sent with an `Idempotency-Key`,
per tenant, until it expires.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mdm_idempotency_key",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.Column("location", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "idempotency_key"),
    )
    op.create_index(
        "ix_mdm_idempotency_key_expiry", "mdm_idempotency_key", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_mdm_idempotency_key_expiry", table_name="mdm_idempotency_key")
    op.drop_table("mdm_idempotency_key")
