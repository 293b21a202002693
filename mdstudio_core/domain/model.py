"""The catalog's identity records: who acts (`Identity`, `ApiToken`) and what is live
(`LiveEntity`), and how ids given at an edge are read.

The vocabulary (`enums`), what a steward submits (`payloads`) and the operator's settings
records (`operations`) live in their own modules and are re-exported here, so callers may keep
importing them from `mdstudio_core.domain.model`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mdstudio_core.domain.enums import (
    CATALOG_ENTITY_TYPES,
    ApprovalStatus,
    EntityStatus,
    EntityType,
    Lane,
    Priority,
    ProfileReason,
    SkipReason,
    Tier,
    Trigger,
)
from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.operations import (
    PassProgress,
    ProfileLimits,
    ProfilePass,
    SourceAccess,
    StoreTimeouts,
    TablePosition,
)
from mdstudio_core.domain.payloads import (
    CANONICAL_KEY_PATTERN,
    IDENTIFIER_PATTERN,
    KEY_FIELD,
    PAYLOAD_MODELS,
    STRUCTURAL_FIELDS,
    TERM_PATTERN,
    ApprovalRequest,
    Binding,
    ColumnRule,
    Incremental,
    stored_binding,
)

__all__ = [
    "BOOKKEEPING_FIELDS",
    "CANONICAL_KEY_PATTERN",
    "CATALOG_ENTITY_TYPES",
    "IDENTIFIER_PATTERN",
    "KEY_FIELD",
    "PAYLOAD_MODELS",
    "STRUCTURAL_FIELDS",
    "TENANT_ADMIN_ROLE",
    "TERM_PATTERN",
    "ApiToken",
    "ApprovalRequest",
    "ApprovalStatus",
    "Binding",
    "ColumnRule",
    "EntityStatus",
    "EntityType",
    "Identity",
    "Incremental",
    "Lane",
    "LiveEntity",
    "PassProgress",
    "Priority",
    "ProfileLimits",
    "ProfilePass",
    "ProfileReason",
    "SkipReason",
    "SourceAccess",
    "StoreTimeouts",
    "TablePosition",
    "Tier",
    "Trigger",
    "entity_urn",
    "parse_id",
    "stored_binding",
]


def entity_urn(tenant_id: uuid.UUID | str, canonical_key: str) -> str:
    """The stable name of a governed field across systems (profiles, Dagster, lineage)."""
    return f"urn:mdstudio:{tenant_id}:metadata:{canonical_key}"


# The role that administers a tenant: its approval policy, its incidents, its notifications and
# its name; a tenant admin may also preview and close what any workflow role may.
TENANT_ADMIN_ROLE = "tenant_admin"


@dataclass(frozen=True)
class Identity:
    """Who is acting: a user of one tenant holding some roles. Fixed by the caller's credentials."""

    tenant_id: uuid.UUID
    user: str
    roles: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ApiToken:
    """An API token's record (never its secret, nor its hash): it fixes tenant, user and roles
    until it expires or is revoked."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    user: str
    roles: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def live_at(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def identity(self) -> Identity:
        return Identity(tenant_id=self.tenant_id, user=self.user, roles=frozenset(self.roles))


# Fields every live entity carries besides its governed state.
BOOKKEEPING_FIELDS = ("id", "tenant_id", "version", "updated_at", "updated_by")


@dataclass(frozen=True)
class LiveEntity:
    """One live catalog entity, typed. `state` holds its governed fields in JSON form (what an
    approval's payload carries and what approvals compare); the fields every service needs are
    typed beside it."""

    entity_type: EntityType
    id: uuid.UUID
    tenant_id: uuid.UUID
    canonical_key: str
    tier: Tier
    status: EntityStatus
    version: int
    updated_at: dt.datetime
    updated_by: str
    state: Mapping[str, Any]
    binding: Binding | None = None

    @property
    def depends_on(self) -> tuple[str, ...]:
        """The metadata keys a KPI is computed from (empty for other types)."""
        return tuple(self.state.get("depends_on") or ())

    @property
    def profiled(self) -> bool:
        """Bound and not deprecated: something to profile."""
        return self.binding is not None and self.status is not EntityStatus.DEPRECATED

    def as_dict(self) -> dict[str, Any]:
        """The flat JSON form shown by `metadata show` and `GET /metadata/{key}`, and kept as an
        approval's `current_state`."""
        return {
            "id": str(self.id),
            "tenant_id": str(self.tenant_id),
            **self.state,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


def parse_id(value: uuid.UUID | str, field: str) -> uuid.UUID:
    """An id given at an edge (CLI argument, form field): a UUID, else invalid input naming
    the field (`approval_id` reads "not a valid approval id (a UUID)")."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        what = field.replace("_", " ")
        raise InvalidInput(f"not a valid {what} (a UUID)", field=field) from exc
