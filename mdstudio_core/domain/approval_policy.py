"""Who approves what: the role and the number of approvers each (lane, tier) cell needs, a
tenant's overrides of them, and who may change that policy or ask for evidence.

Who decides follows what a change touches, not only the lane its requester picked; the
`Approval` aggregate (`domain/approvals.py`) applies these rules at submission and again at
decision time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mdstudio_core.domain.errors import Forbidden, InvalidInput
from mdstudio_core.domain.model import TENANT_ADMIN_ROLE, Identity, Lane, LiveEntity, Tier

# Who approves what, unless a tenant overrides it. Overrides may name a tier or "*" for every
# tier of a lane; the most specific one wins.
DEFAULT_REQUIRED_ROLE: dict[Lane, str] = {
    Lane.KERNEL: "kernel_owner",
    Lane.GOVERNED: "metadata_steward",
    Lane.DRAFT: "metadata_steward",
}
# tier1 is the kernel's: stewards' governed lane may not change it.
ALLOWED_LANES: dict[Tier, frozenset[Lane]] = {
    Tier.TIER1: frozenset({Lane.KERNEL, Lane.DRAFT}),
    Tier.TIER2: frozenset(Lane),
    Tier.TIER3: frozenset(Lane),
}
# The lane whose role a tier itself requires: tier1 is the kernel's, the rest are governed.
TIER_LANE: dict[Tier, Lane] = {
    Tier.TIER1: Lane.KERNEL,
    Tier.TIER2: Lane.GOVERNED,
    Tier.TIER3: Lane.GOVERNED,
}
# Strictness: a more governed tier first, then the kernel lane before governed before draft.
_TIER_ORDER = (Tier.TIER1, Tier.TIER2, Tier.TIER3)
_LANE_ORDER = (Lane.KERNEL, Lane.GOVERNED, Lane.DRAFT)
# The roles of the approval workflow: who may ask for evidence on a live entity.
WORKFLOW_ROLES = frozenset({*DEFAULT_REQUIRED_ROLE.values(), TENANT_ADMIN_ROLE})
ROLE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")

PolicyOverrides = Mapping[tuple[str, str], str]
# How many approvers each (lane, tier or "*") needs, where a tenant asks for more than one.
ApprovalCounts = Mapping[tuple[str, str], int]
# A policy cell: the lane and tier whose role decides a request.
Cell = tuple[Lane, Tier]
MAX_APPROVALS = 10


def _cell_role(lane: Lane, tier: Tier, overrides: PolicyOverrides) -> str:
    """The role the policy names for (lane, tier): an override for the tier, for the lane's
    every tier (`*`), or the lane's default."""
    return (
        overrides.get((lane.value, tier.value))
        or overrides.get((lane.value, "*"))
        or DEFAULT_REQUIRED_ROLE[lane]
    )


def required_role(
    lane: Lane, tier: Tier, overrides: PolicyOverrides, live_tier: Tier | None = None
) -> str:
    """The role a decider must hold: the strictest of what the lane, the requested tier and
    the live entity's tier each require. Who decides follows what the change touches, not only
    the lane the requester picked: a change to a tier1 entity (a demotion included) always needs
    the role the policy gives tier1, whatever lane it comes through and whatever the overrides
    of other lanes say."""
    return _cell_role(*required_cell(lane, tier, live_tier), overrides)


def required_cell(lane: Lane, tier: Tier, live_tier: Tier | None = None) -> Cell:
    """The policy cell that decides a request (see `required_role`): the strictest of the
    lane's, the requested tier's and the touched (live entity's) tier's."""
    cells = [(lane, tier), (TIER_LANE[tier], tier)]
    if live_tier is not None:
        cells.append((TIER_LANE[live_tier], live_tier))
    return min(cells, key=strictness)


def strictness(cell: Cell) -> tuple[int, int]:
    """Sorts cells strictest first: a more governed tier, then kernel, governed, draft."""
    return _TIER_ORDER.index(cell[1]), _LANE_ORDER.index(cell[0])


def cell_role(cell: Cell, overrides: PolicyOverrides) -> str:
    """The role the policy names for a cell."""
    return _cell_role(*cell, overrides)


def required_approvals(cell: Cell, counts: ApprovalCounts) -> int:
    """How many distinct approvers a request decided by `cell` needs: the tenant's count for
    the cell's tier, for the lane's every tier (`*`), else one."""
    lane, tier = cell
    return counts.get((lane.value, tier.value)) or counts.get((lane.value, "*")) or 1


def effective_approvals(counts: ApprovalCounts) -> dict[str, dict[str, int]]:
    """How many approvers a request for a new entity on each lane and tier needs."""
    return {
        lane.value: {
            tier.value: required_approvals(required_cell(lane, tier), counts) for tier in Tier
        }
        for lane in Lane
    }


def check_approvals_count(count: int) -> int:
    """A policy asks for 1 to `MAX_APPROVALS` approvers."""
    if not 1 <= count <= MAX_APPROVALS:
        raise InvalidInput(f"must be between 1 and {MAX_APPROVALS}", field="approvals")
    return count


def touched_tier(live: LiveEntity | None, breaks_tier1_kpi: bool) -> Tier | None:
    """The tier of what a change touches besides its own: tier1 when it deprecates or unbinds
    a field an active tier1 KPI depends on, else the live entity's (None: a new entity)."""
    if breaks_tier1_kpi:
        return Tier.TIER1
    return live.tier if live else None


def effective_policy(overrides: PolicyOverrides) -> dict[str, dict[str, str]]:
    """The role a request for a new entity on each lane and tier requires, given a tenant's
    overrides."""
    return {
        lane.value: {tier.value: required_role(lane, tier, overrides) for tier in Tier}
        for lane in Lane
    }


def check_may_preview_entity(identity: Identity) -> None:
    """Profiling a live entity now is evidence for a decision: only the workflow roles ask
    for it (a profile shows values, a minimum or a maximum of the bound columns)."""
    if not WORKFLOW_ROLES & identity.roles:
        raise Forbidden(
            "previewing a live entity requires one of the roles "
            f"{', '.join(sorted(WORKFLOW_ROLES))} "
            f"(you have: {', '.join(sorted(identity.roles)) or 'none'})"
        )


def check_policy_change(identity: Identity, role: str) -> str:
    """Only a tenant admin changes who approves; the role must be a plain name."""
    if TENANT_ADMIN_ROLE not in identity.roles:
        raise Forbidden(f"changing the approval policy requires the {TENANT_ADMIN_ROLE} role")
    role = role.strip()
    if not ROLE_PATTERN.match(role):
        raise InvalidInput("must be a role name (letters, digits, _ or -)", field="required_role")
    return role
