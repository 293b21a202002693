"""API bearer tokens: who a request comes from, fixed by an administrator, never by the request.

A token is `mds_` plus 32 random bytes (URL-safe base64), printed once when created. Only its
SHA-256 is stored, so a copy of the store grants nothing, and looking a token up by its hash
through a unique index is the whole check: there is no secret comparison whose timing could leak.
The token fixes tenant, user and roles; expiry and revocation end it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid

from mdstudio_core.domain.clock import now as _now  # a module name tests can move in time
from mdstudio_core.domain.errors import InvalidInput, NotFound
from mdstudio_core.domain.model import ApiToken, Identity, parse_id
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

TOKEN_PREFIX = "mds_"
# A token lives this long unless created with another lifetime (or `never`).
DEFAULT_LIFETIME = dt.timedelta(days=90)
# What every refused token hears: whether it was unknown, expired or revoked is not told.
INVALID_TOKEN = "the token is invalid or expired"
# token_urlsafe(32) gives 43 characters; anything much longer is not one of ours.
_MAX_TOKEN_LENGTH = 100
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_ROLE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class Unauthenticated(Exception):
    """No usable credentials: unknown, malformed, expired or revoked token. Deliberately not an
    `MdstudioError`: only the HTTP layer authenticates, and it answers 401."""


def parse_lifetime(text: str) -> dt.timedelta | None:
    """`90m`, `12h`, `30d`, `2w` (or seconds: `45s`) as a positive duration; `never` as None."""
    if text.strip().lower() == "never":
        return None
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(
            "must be a positive number followed by s, m, h, d or w (e.g. 30d), or never",
            field="expires_in",
        )
    return dt.timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})


def check_identity(identity: Identity) -> Identity:
    """The limits every identity must respect before it is stored or trusted: a user name the
    store can hold and role names of plain characters (they are compared, never parsed)."""
    if not identity.user or len(identity.user) > 200 or identity.user != identity.user.strip():
        raise InvalidInput("must be 1 to 200 characters, without surrounding spaces", field="user")
    if any(ch in identity.user for ch in "\x00\r\n"):
        raise InvalidInput("must not contain control characters", field="user")
    for role in identity.roles:
        if not _ROLE.match(role):
            raise InvalidInput("must be a role name (letters, digits, _ or -)", field="role")
    return identity


def create_token(
    uow: UnitOfWork, identity: Identity, expires_in: dt.timedelta | None = DEFAULT_LIFETIME
) -> tuple[str, ApiToken]:
    """Issue a token for `identity` that expires after `expires_in` (None: never); return the
    secret (shown once, never stored) and its record."""
    check_identity(identity)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = _now()
    with uow:
        token = uow.tokens.add(
            uuid.uuid4(), _hash(secret), identity, now, now + expires_in if expires_in else None
        )
        uow.commit()
    return secret, token


def list_tokens(uow: UnitOfWork, tenant_id: uuid.UUID | None = None) -> list[ApiToken]:
    """Every token (or one tenant's), oldest first, without secrets or hashes."""
    with uow:
        return uow.tokens.list(tenant_id)


def revoke_token(uow: UnitOfWork, token_id: uuid.UUID | str) -> ApiToken:
    """End a token now. Revoking it again changes nothing (it stays revoked since the first)."""
    token_uuid = parse_id(token_id, "token_id")
    with uow:
        if uow.tokens.get(token_uuid) is None:
            raise NotFound(f"token {token_uuid} not found")
        uow.tokens.revoke(token_uuid, _now())
        uow.console_sessions.end_for_token(token_uuid)  # its console sessions end with it
        token = uow.tokens.get(token_uuid)
        uow.commit()
    assert token is not None
    return token


def authenticate(uow: UnitOfWork, secret: str) -> Identity:
    """The identity a token fixes. Raises `Unauthenticated` for anything but a live token, with
    the same message whether it is malformed, unknown, expired or revoked."""
    return live_token(uow, secret).identity


def live_token(uow: UnitOfWork, secret: str) -> ApiToken:
    """The record of a live token (see `authenticate`)."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > _MAX_TOKEN_LENGTH:
        raise Unauthenticated(INVALID_TOKEN)
    with uow:
        token = uow.tokens.by_hash(_hash(secret))
    if token is None or not token.live_at(_now()):
        raise Unauthenticated(INVALID_TOKEN)
    return token


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
