"""Steward console sessions, each standing on a live API token; the sign-in attempts the console
counts; the server's keys."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository
from mdstudio_core.adapters.repositories.tokens import api_token
from mdstudio_core.domain.model import ApiToken

_SESSION_IDENTITY = (
    select(tables.api_tokens, tables.console_sessions.c.last_seen_at.label("session_last_seen_at"))
    .join_from(
        tables.console_sessions,
        tables.api_tokens,
        tables.api_tokens.c.id == tables.console_sessions.c.token_id,
    )
    .where(
        tables.console_sessions.c.session_hash == bindparam("session_hash"),
        tables.console_sessions.c.expires_at > bindparam("now"),
        tables.console_sessions.c.last_seen_at > bindparam("idle_since"),
        tables.api_tokens.c.revoked_at.is_(None),
        (tables.api_tokens.c.expires_at.is_(None))
        | (tables.api_tokens.c.expires_at > bindparam("now")),
    )
)


class ConsoleSessionRepository(Repository):
    """Steward console sessions, by the SHA-256 of their opaque id, each tied to a token; the
    sign-in attempts counted per client and minute; the server's keys."""

    def add(
        self,
        session_hash: str,
        token: ApiToken,
        created_at: dt.datetime,
        expires_at: dt.datetime,
    ) -> None:
        self._connection.execute(
            insert(tables.console_sessions).values(
                session_hash=session_hash,
                tenant_id=token.tenant_id,
                token_id=token.id,
                created_at=created_at,
                expires_at=expires_at,
                last_seen_at=created_at,
            )
        )

    def live_session(
        self, session_hash: str, now: dt.datetime, idle_since: dt.datetime
    ) -> tuple[ApiToken, dt.datetime] | None:
        """The token of a session that has not expired nor been idle since `idle_since`, while
        that token is live, and when the session was last seen (one probe by primary key,
        joined to the token: revocation ends the session at once)."""
        row = self._connection.execute(
            _SESSION_IDENTITY,
            {"session_hash": session_hash, "now": now, "idle_since": idle_since},
        ).first()
        return (api_token(row), row.session_last_seen_at) if row else None

    def seen(self, session_hash: str, at: dt.datetime, unless_seen_since: dt.datetime) -> None:
        """Note that the session was used `at`, unless that was noted since `unless_seen_since`
        already (so concurrent pages write it once)."""
        column = tables.console_sessions.c
        self._connection.execute(
            update(tables.console_sessions)
            .where(column.session_hash == session_hash, column.last_seen_at < unless_seen_since)
            .values(last_seen_at=at)
        )

    def end(self, session_hash: str) -> None:
        self._connection.execute(
            delete(tables.console_sessions).where(
                tables.console_sessions.c.session_hash == session_hash
            )
        )

    def end_for_token(self, token_id: uuid.UUID) -> None:
        """End all of a token's sessions."""
        self._connection.execute(
            delete(tables.console_sessions).where(tables.console_sessions.c.token_id == token_id)
        )

    def end_stale(self, token_id: uuid.UUID, now: dt.datetime, idle_since: dt.datetime) -> None:
        """End a token's sessions that have expired by `now` or not been seen since
        `idle_since`."""
        column = tables.console_sessions.c
        self._connection.execute(
            delete(tables.console_sessions).where(
                column.token_id == token_id,
                (column.expires_at <= now) | (column.last_seen_at <= idle_since),
            )
        )

    def count_login_attempt(self, client_hash: str, minute: int) -> int:
        """Count one sign-in attempt of a client in a minute and return the minute's count so
        far (one atomic upsert: concurrent attempts, from any process, each get their own
        number); earlier minutes' counts are dropped."""
        column = tables.console_login_attempts.c
        self._connection.execute(
            delete(tables.console_login_attempts).where(column.minute < minute)
        )
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        upsert = dialect.insert(tables.console_login_attempts).values(
            client_hash=client_hash, minute=minute, attempts=1
        )
        return self._connection.execute(
            upsert.on_conflict_do_update(
                index_elements=[column.client_hash, column.minute],
                set_={"attempts": column.attempts + 1},
            ).returning(column.attempts)
        ).scalar_one()

    def server_key(self, name: str, candidate: str, at: dt.datetime) -> str:
        """The key called `name`, made from `candidate` if there is none yet. Two processes
        making it at once end with one key: the second insert does nothing (waiting for the
        first to commit) and both read the row that won."""
        column = tables.server_keys.c
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        self._connection.execute(
            dialect.insert(tables.server_keys)
            .values(name=name, secret=candidate, created_at=at)
            .on_conflict_do_nothing(index_elements=[column.name])
        )
        return self._connection.execute(
            select(column.secret).where(column.name == name)
        ).scalar_one()
