"""Console guards: a session's last-seen time (the idle timeout), sign-in attempts per client and
minute (the rate limit every server process shares), and server-side keys made once (the
sign-in form's CSRF key).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sessions opened before this revision count as seen when they were opened.
    op.add_column(
        "mdm_console_session", sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE mdm_console_session SET last_seen_at = created_at")
    with op.batch_alter_table("mdm_console_session") as batch:
        batch.alter_column("last_seen_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_table(
        "mdm_console_login_attempt",
        sa.Column("client_hash", sa.String(length=64), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client_hash", "minute"),
    )
    op.create_index("ix_mdm_console_login_attempt_minute", "mdm_console_login_attempt", ["minute"])
    op.create_table(
        "mdm_server_key",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("mdm_server_key")
    op.drop_index("ix_mdm_console_login_attempt_minute", table_name="mdm_console_login_attempt")
    op.drop_table("mdm_console_login_attempt")
    with op.batch_alter_table("mdm_console_session") as batch:
        batch.drop_column("last_seen_at")
