"""The ways a request can fail. Entry points map them to exit codes and HTTP statuses once."""

from __future__ import annotations

from collections.abc import Iterable


class MdstudioError(Exception):
    """Base of every error a caller is meant to see; the message names the reason."""


class InvalidInput(MdstudioError):
    """The request is malformed: the message names the offending field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class PayloadTooLarge(InvalidInput):
    """A request larger than the configured bound (HTTP 413; CLI exit 2 like any bad input)."""


class Forbidden(MdstudioError):
    """The caller is known but may not do this (role, four-eyes, requester-only)."""


class NotFound(MdstudioError):
    """No such object in the caller's tenant (another tenant's objects are reported the same way,
    so their existence does not leak)."""


class Gone(NotFound):
    """What was asked for was there and has been archived: the outbox keeps events from
    `earliest_id` on (HTTP 410; CLI exit 4, as not found)."""

    def __init__(self, message: str, earliest_id: int) -> None:
        super().__init__(message)
        self.earliest_id = earliest_id


class Conflict(MdstudioError):
    """The request is valid but the state moved on: already decided, stale, or a lost race."""


class StoreTimeout(MdstudioError):
    """The metadata store did not answer within its bounds (a statement ran too long, or waited
    too long for a lock another transaction holds). Nothing was changed; retrying later may
    succeed. The message names the bound."""


class ConfigurationError(MdstudioError):
    """A setting is malformed. The message names the variable, never its value (a URL may
    hold a password); entry points fail at start with it (CLI exit 1)."""

    def __init__(self, message: str, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


def field_path(location: Iterable[str | int], prefix: str = "") -> str:
    """A validation error's location as users write it: `("payload", "columns", 0, "name")`
    -> `payload.columns[0].name`. The CLI and the HTTP API name fields the same way."""
    path = prefix
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path
