"""Steward console sessions: a token pasted once becomes a session whose opaque id lives in a
cookie. Only the id's SHA-256 is stored, never the token; the session expires no later than its
token, ends when the token is revoked (the lookup joins the token's row), and ends when left idle
(its last-seen time, written at most once a minute so that a page read writes nothing).

Signing in is guarded by the store, so every server process sharing it agrees: attempts are
counted per client address and minute, and the sign-in form's CSRF key is made once there."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
from dataclasses import dataclass

from mdstudio_core.domain import clock
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.tokens import Unauthenticated
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

# What a session id looks like (token_urlsafe(32)); anything much longer is not one of ours.
_MAX_SESSION_ID_LENGTH = 100
SESSION_EXPIRED = "the session has ended or expired: sign in again"
# A session's last-seen time is written when it is older than this: the idle timeout is kept to
# the minute without a write per page.
SEEN_EVERY = dt.timedelta(minutes=1)
# The name of the sign-in form's CSRF key in the store.
LOGIN_CSRF_KEY = "console_login_csrf"


@dataclass(frozen=True)
class Session:
    """A new session: the id for the cookie (never stored) and when it ends."""

    id: str
    identity: Identity
    expires_at: dt.datetime


@dataclass(frozen=True)
class ActiveSession:
    """A live session's user, and whether its last-seen time is due to be written again."""

    identity: Identity
    seen_due: bool


class TooManySignIns(Exception):
    """A client has used up its sign-in attempts for this minute: it may try again after
    `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many sign-in attempts from your address: try again in {retry_after} s"
        )
        self.retry_after = retry_after


def open_session(
    uow: UnitOfWork, secret: str, lifetime: dt.timedelta, idle_timeout: dt.timedelta
) -> Session:
    """Exchange a live token for a session lasting `lifetime`, or less when the token expires
    sooner. Raises `Unauthenticated` for a token that is not live."""
    now = clock.now()
    session_id = secrets.token_urlsafe(32)
    with uow:
        token = tokens.live_token(uow, secret.strip())
        expires_at = now + lifetime
        if token.expires_at is not None:
            expires_at = min(expires_at, token.expires_at)
        uow.console_sessions.end_stale(token.id, now, now - idle_timeout)  # tidy the dead ones
        uow.console_sessions.add(session_hash(session_id), token, now, expires_at)
        uow.commit()
    return Session(session_id, token.identity, expires_at)


def active_session(uow: UnitOfWork, session_id: str, idle_timeout: dt.timedelta) -> ActiveSession:
    """Who a live session belongs to (its token's identity): one that has not expired, whose
    token is live and that was seen within `idle_timeout`; `Unauthenticated` otherwise."""
    if not session_id or len(session_id) > _MAX_SESSION_ID_LENGTH:
        raise Unauthenticated(SESSION_EXPIRED)
    now = clock.now()
    with uow:
        found = uow.console_sessions.live_session(session_hash(session_id), now, now - idle_timeout)
    if found is None:
        raise Unauthenticated(SESSION_EXPIRED)
    token, last_seen_at = found
    return ActiveSession(token.identity, seen_due=last_seen_at <= now - SEEN_EVERY)


def record_activity(uow: UnitOfWork, session_id: str) -> None:
    """Note that the session is in use now (unless that was noted within `SEEN_EVERY`)."""
    now = clock.now()
    with uow:
        uow.console_sessions.seen(session_hash(session_id), now, now - SEEN_EVERY)
        uow.commit()


def end_session(uow: UnitOfWork, session_id: str) -> None:
    """Sign out: the session is gone; ending an unknown one changes nothing."""
    with uow:
        uow.console_sessions.end(session_hash(session_id))
        uow.commit()


def count_sign_in(
    uow: UnitOfWork, client: str, per_minute: int, now: dt.datetime | None = None
) -> None:
    """Count a sign-in attempt from `client` (its address). Raises `TooManySignIns` for each
    attempt past `per_minute` within the same minute, counted in the store, so the limit holds
    across every server process sharing it."""
    at = (now or clock.now()).timestamp()
    minute = int(at) // 60
    with uow:
        attempts = uow.console_sessions.count_login_attempt(_sha256(client), minute)
        uow.commit()
    if attempts > per_minute:
        raise TooManySignIns(retry_after=max(1, math.ceil((minute + 1) * 60 - at)))


def login_csrf_key(uow: UnitOfWork) -> bytes:
    """The sign-in form's CSRF key: made once in the store by the first process to ask, the
    same for every process after (two making it at once end with one)."""
    with uow:
        key = uow.console_sessions.server_key(LOGIN_CSRF_KEY, secrets.token_hex(32), clock.now())
        uow.commit()
    return bytes.fromhex(key)


def session_hash(session_id: str) -> str:
    return _sha256(session_id)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
