"""Idempotency keys and the answers stored under them."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository
from mdstudio_core.domain.idempotency import Answer, KeyedRequest, StoredKey

# Expired keys purged per claim at most: the table stays bounded without a job of its own, and
# no request waits on another's purge (rows another transaction holds are skipped).
PURGE_BATCH = 100


class IdempotencyKeyRepository(Repository):
    """Idempotency keys and their answers (`mdm_idempotency_key`), per tenant."""

    def claim(
        self,
        tenant_id: uuid.UUID,
        request: KeyedRequest,
        now: dt.datetime,
        expires_at: dt.datetime,
    ) -> StoredKey | None:
        """Take `request.key` for this transaction's request (None), or return what an earlier
        request stored under it. An expired key is taken anew.

        On PostgreSQL a transaction that took the same key and has not committed makes this
        wait for it (the primary key's index), up to the store's lock timeout: when it commits,
        its answer is returned; when it rolls back, the key is taken here. On SQLite the write
        lock serialises the two."""
        keys = tables.idempotency_keys
        self._purge_expired(now)
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        inserted = self._connection.execute(
            dialect.insert(keys)
            .values(
                tenant_id=tenant_id,
                idempotency_key=request.key,
                fingerprint=request.fingerprint,
                created_at=now,
                expires_at=expires_at,
            )
            .on_conflict_do_nothing()
            .returning(keys.c.fingerprint)
        ).first()
        if inserted is not None:
            return None
        this_key = (keys.c.tenant_id == tenant_id) & (keys.c.idempotency_key == request.key)
        renewed = self._connection.execute(
            update(keys)
            .where(this_key, keys.c.expires_at <= now)
            .values(
                fingerprint=request.fingerprint,
                status_code=None,
                response_body=None,
                location=None,
                created_at=now,
                expires_at=expires_at,
            )
        )
        if renewed.rowcount == 1:
            return None
        row = self._connection.execute(select(keys).where(this_key)).one()
        answer = (
            Answer(row.status_code, bytes(row.response_body), row.location)
            if row.status_code is not None
            else None
        )
        return StoredKey(row.fingerprint, answer, row.expires_at)

    def record(self, tenant_id: uuid.UUID, key: str, answer: Answer) -> None:
        """Store the answer of the request that claimed `key`, in its transaction."""
        keys = tables.idempotency_keys
        self._connection.execute(
            update(keys)
            .where(keys.c.tenant_id == tenant_id, keys.c.idempotency_key == key)
            .values(
                status_code=answer.status,
                response_body=answer.body,
                location=answer.location,
            )
        )

    def _purge_expired(self, now: dt.datetime) -> None:
        keys = tables.idempotency_keys
        expired = (
            select(keys.c.tenant_id, keys.c.idempotency_key)
            .where(keys.c.expires_at <= now)
            .limit(PURGE_BATCH)
            .with_for_update(skip_locked=True)
        )
        self._connection.execute(
            delete(keys).where(tuple_(keys.c.tenant_id, keys.c.idempotency_key).in_(expired))
        )
