"""Which approval requests a listing keeps, and which page of them: one value the HTTP router,
the CLI and the console build and the service and the repository read, so a filter is named
once rather than restated at every layer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mdstudio_core.domain.model import ApprovalStatus, EntityType, Identity, Lane, Tier


@dataclass(frozen=True)
class ApprovalFilter:
    """A listing of one tenant's requests: newest first unless `oldest_first`; the payload and
    current state only with `include_payload`. `required_roles` keeps the requests one of those
    roles decides; `requested_by` and `not_requested_by` keep or drop one requester's."""

    status: ApprovalStatus | None = None
    entity_type: EntityType | None = None
    tier: Tier | None = None
    lane: Lane | None = None
    entity_key: str | None = None
    required_roles: frozenset[str] | None = None
    requested_by: str | None = None
    not_requested_by: str | None = None
    limit: int = 50
    offset: int = 0
    include_payload: bool = False
    oldest_first: bool = False

    def decidable_by(self, identity: Identity) -> ApprovalFilter:
        """Only the requests `identity` may decide: a role they hold, and not their own (the
        console's inbox)."""
        return dataclasses.replace(
            self, required_roles=identity.roles, not_requested_by=identity.user
        )

    def made_by(self, identity: Identity) -> ApprovalFilter:
        """Only `identity`'s own requests."""
        return dataclasses.replace(self, requested_by=identity.user)
