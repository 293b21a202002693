"""Steward console sessions: a token pasted once becomes a session whose opaque id lives in a
cookie. Only the id's SHA-256 is stored, never the token; the session expires no later than its
token and ends when the token is revoked (the lookup joins the token's row)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.tokens import Unauthenticated
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

# What a session id looks like (token_urlsafe(32)); anything much longer is not one of ours.
_MAX_SESSION_ID_LENGTH = 100
SESSION_EXPIRED = "the session has ended or expired: sign in again"


@dataclass(frozen=True)
class Session:
    """A new session: the id for the cookie (never stored) and when it ends."""

    id: str
    identity: Identity
    expires_at: dt.datetime


def open_session(uow: UnitOfWork, secret: str, lifetime: dt.timedelta) -> Session:
    """Exchange a live token for a session lasting `lifetime`, or less when the token expires
    sooner. Raises `Unauthenticated` for a token that is not live."""
    now = _now()
    session_id = secrets.token_urlsafe(32)
    with uow:
        token = tokens.live_token(uow, secret.strip())
        expires_at = now + lifetime
        if token.expires_at is not None:
            expires_at = min(expires_at, token.expires_at)
        uow.console_sessions.end_for_token(token.id, expired_before=now)  # tidy the stale ones
        uow.console_sessions.add(session_hash(session_id), token, now, expires_at)
        uow.commit()
    return Session(session_id, token.identity, expires_at)


def session_identity(uow: UnitOfWork, session_id: str) -> Identity:
    """Who a live session belongs to (its token's identity); `Unauthenticated` otherwise."""
    if not session_id or len(session_id) > _MAX_SESSION_ID_LENGTH:
        raise Unauthenticated(SESSION_EXPIRED)
    with uow:
        token = uow.console_sessions.live_token(session_hash(session_id), _now())
    if token is None:
        raise Unauthenticated(SESSION_EXPIRED)
    return token.identity


def end_session(uow: UnitOfWork, session_id: str) -> None:
    """Sign out: the session is gone; ending an unknown one changes nothing."""
    with uow:
        uow.console_sessions.end(session_hash(session_id))
        uow.commit()


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
