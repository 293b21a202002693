"""Requests that can be retried safely. A client names a request with an `Idempotency-Key`; a
retry carrying the same key and the same request gets the first answer (status and body)
instead of the work being done again, so a client whose server died mid-request can send it
again to another one. The same key with another request is refused: a key names one request.

What makes two requests "the same" is their fingerprint: the user, the method, the path and the
body as JSON (key order and spacing do not count)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from mdstudio_core.domain.errors import InvalidInput

KEY_FIELD = "Idempotency-Key"
# Visible ASCII, no spaces, as most clients generate them (a UUID, a hash, a counter).
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


@dataclass(frozen=True)
class Answer:
    """What a request was answered: its HTTP status, its body, and the `Location` of what it
    created. `replayed`: given again for a retry, not made by doing the work."""

    status: int
    body: bytes
    location: str | None = None
    replayed: bool = False


@dataclass(frozen=True)
class KeyedRequest:
    """A request sent under an idempotency key, and its fingerprint."""

    key: str
    fingerprint: str


@dataclass(frozen=True)
class StoredKey:
    """A key as the store holds it: the fingerprint of the request that first used it, its
    answer (None only inside the transaction doing the work), and when it may be forgotten."""

    fingerprint: str
    answer: Answer | None
    expires_at: dt.datetime


def keyed_request(key: str, user: str, method: str, path: str, body: Any) -> KeyedRequest:
    """`key` checked, and the fingerprint of the request (`body`: its JSON, None when empty)."""
    if not re.match(KEY_PATTERN, key):
        raise InvalidInput(
            "must be 1 to 255 visible ASCII characters without spaces (a UUID, say)",
            field=KEY_FIELD,
        )
    canonical = json.dumps(
        [user, method.upper(), path, body], sort_keys=True, separators=(",", ":")
    )
    return KeyedRequest(key, hashlib.sha256(canonical.encode()).hexdigest())


def replay(stored: StoredKey, request: KeyedRequest) -> Answer:
    """The stored answer for a retry of the same request; a different request under the key is
    invalid input naming the header."""
    if stored.fingerprint != request.fingerprint:
        raise InvalidInput(
            "was already used for another request (a different body, route or user); "
            "send a new key with a new request",
            field=KEY_FIELD,
        )
    assert stored.answer is not None, "a committed key always holds its answer"
    return dataclasses.replace(stored.answer, replayed=True)
