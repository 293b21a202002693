"""The event stream at scale: scheduled profiling passes planned a page per tick; the outbox's
consumers' replays and failing events; dead letters; the archive's record (the horizon).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# JSONB on PostgreSQL, JSON text elsewhere (as in mdstudio_core.adapters.tables).
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def cursor_columns() -> list[sa.Column]:
    """The consumer cursor's new columns (fresh objects: a column belongs to one table)."""
    return [
        sa.Column("generation", sa.Integer(), server_default="0", nullable=False),
        sa.Column("replay_id", EVENT_ID, nullable=True),
        sa.Column("replay_through", EVENT_ID, nullable=True),
        sa.Column("resume_after", EVENT_ID, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failing_event_id", EVENT_ID, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    ]


revision = "0013"
down_revision = "0012"
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
    with op.batch_alter_table("mdm_consumer_cursor") as batch:
        for column in cursor_columns():
            batch.add_column(column)
    op.create_table(
        "mdm_dead_letter",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("event_id", EVENT_ID, nullable=False),
        sa.Column("event", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("consumer", "event_id", name="uq_mdm_dead_letter_event"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_mdm_dead_letter_status", "mdm_dead_letter", ["consumer", "status"])
    op.create_table(
        "mdm_event_archive",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("first_event_id", EVENT_ID, nullable=False),
        sa.Column("last_event_id", EVENT_ID, nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("directory", sa.Text(), nullable=False),
        sa.Column("files", JSON, nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("archived_by", sa.String(length=200), nullable=False),
        sa.Column("profile_outcomes", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("first_event_id", name="uq_mdm_event_archive_first"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("mdm_event_archive")
    op.drop_index("ix_mdm_dead_letter_status", table_name="mdm_dead_letter")
    op.drop_table("mdm_dead_letter")
    with op.batch_alter_table("mdm_consumer_cursor") as batch:
        for column in reversed(cursor_columns()):
            batch.drop_column(column.name)
    op.drop_table("mdm_profile_pass")
