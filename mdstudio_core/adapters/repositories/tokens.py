"""API tokens, stored by the hash of their secret."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository
from mdstudio_core.domain.model import ApiToken, Identity

_TOKEN_BY_HASH = select(tables.api_tokens).where(
    tables.api_tokens.c.token_hash == bindparam("token_hash")
)


class TokenRepository(Repository):
    """API tokens, by the SHA-256 of their secret (the secret itself is never stored)."""

    def add(
        self,
        token_id: uuid.UUID,
        token_hash: str,
        identity: Identity,
        created_at: dt.datetime,
        expires_at: dt.datetime | None,
    ) -> ApiToken:
        token = ApiToken(
            id=token_id,
            tenant_id=identity.tenant_id,
            user=identity.user,
            roles=tuple(sorted(identity.roles)),
            created_at=created_at,
            expires_at=expires_at,
            revoked_at=None,
        )
        self._connection.execute(
            insert(tables.api_tokens).values(
                id=token.id,
                token_hash=token_hash,
                tenant_id=token.tenant_id,
                user_name=token.user,
                roles=list(token.roles),
                created_at=token.created_at,
                expires_at=token.expires_at,
            )
        )
        return token

    def by_hash(self, token_hash: str) -> ApiToken | None:
        """The token with this hash; a unique index makes this one probe. The statement is
        built once: every HTTP request runs it."""
        row = self._connection.execute(_TOKEN_BY_HASH, {"token_hash": token_hash}).first()
        return api_token(row) if row else None

    def get(self, token_id: uuid.UUID) -> ApiToken | None:
        row = self._connection.execute(
            select(tables.api_tokens).where(tables.api_tokens.c.id == token_id)
        ).first()
        return api_token(row) if row else None

    def list(self, tenant_id: uuid.UUID | None = None) -> list[ApiToken]:
        """Tokens, oldest first; every tenant's when `tenant_id` is None (administration)."""
        query = select(tables.api_tokens)
        if tenant_id is not None:
            query = query.where(tables.api_tokens.c.tenant_id == tenant_id)
        query = query.order_by(tables.api_tokens.c.created_at, tables.api_tokens.c.id)
        return [api_token(row) for row in self._connection.execute(query)]

    def revoke(self, token_id: uuid.UUID, at: dt.datetime) -> None:
        """Mark the token revoked; a token revoked before keeps its first revocation time."""
        self._connection.execute(
            update(tables.api_tokens)
            .where(tables.api_tokens.c.id == token_id, tables.api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )


def api_token(row: Row[Any]) -> ApiToken:
    """A token without its hash: what administration shows and authentication checks."""
    return ApiToken(
        id=row.id,
        tenant_id=row.tenant_id,
        user=row.user_name,
        roles=tuple(row.roles),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )
