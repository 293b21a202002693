"""Profiles saved before 0002 get their canonical key, read from their entity URN.

0002 added `mdm_profile.canonical_key` with an empty default, so older profiles were invisible to
the history and the cost guard, which look profiles up by key. Their `entity_urn` is
`urn:mdstudio:{tenant}:metadata:{canonical_key}`; a row whose URN names another tenant or has
another form is left as it is. Only empty keys are written, so running it again changes nothing.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The table as this revision knows it (never the application's, which moves on).
profiles = sa.table(
    "mdm_profile",
    sa.column("id", sa.Uuid()),
    sa.column("tenant_id", sa.Uuid()),
    sa.column("entity_urn", sa.String()),
    sa.column("canonical_key", sa.String()),
)
URN = re.compile(r"urn:mdstudio:(?P<tenant>[^:]+):metadata:(?P<key>.+)")
BATCH = 1000


def upgrade() -> None:
    """In batches of keyless rows, by id: memory stays flat however many there are."""
    connection = op.get_bind()
    update = (
        sa.update(profiles)
        .where(profiles.c.id == sa.bindparam("profile_id"), profiles.c.canonical_key == "")
        .values(canonical_key=sa.bindparam("key"))
    )
    after: uuid.UUID | None = None
    while rows := keyless(connection, after):
        keys = [
            {"profile_id": row.id, "key": key}
            for row in rows
            if (key := canonical_key(row.tenant_id, row.entity_urn))
        ]
        if keys:
            connection.execute(update, keys)
        after = rows[-1].id


def keyless(connection: sa.Connection, after: uuid.UUID | None) -> list[sa.Row]:
    """The next batch of profiles without a key, after the profile id `after`."""
    query = sa.select(profiles.c.id, profiles.c.tenant_id, profiles.c.entity_urn).where(
        profiles.c.canonical_key == ""
    )
    if after is not None:
        query = query.where(profiles.c.id > after)
    return list(connection.execute(query.order_by(profiles.c.id).limit(BATCH)))


def canonical_key(tenant_id: uuid.UUID, urn: str) -> str | None:
    """The key an URN names for its own tenant, else None."""
    match = URN.fullmatch(urn)
    if match is None or match["tenant"] != str(tenant_id):
        return None
    return match["key"]


def downgrade() -> None:
    """Nothing to undo: the keys are true whatever the revision."""
