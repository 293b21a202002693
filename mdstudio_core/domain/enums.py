"""The catalog's closed vocabularies: entity types, tiers, lanes, statuses, why a profile runs."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class EntityType(StrEnum):
    GLOBAL_METADATA = "GLOBAL_METADATA"
    KPI = "KPI"
    BUSINESS_RULE = "BUSINESS_RULE"
    GLOSSARY = "GLOSSARY"
    # Not a catalog entity: the subject of a change set's approval request, whose items are
    # ordinary requests (`domain/change_sets.py`).
    CHANGE_SET = "CHANGE_SET"


# The types the catalog keeps live entities of (every type but CHANGE_SET).
CATALOG_ENTITY_TYPES = tuple(t for t in EntityType if t is not EntityType.CHANGE_SET)


class Tier(StrEnum):
    TIER1 = "tier1"
    TIER2 = "tier2"
    TIER3 = "tier3"


class Lane(StrEnum):
    KERNEL = "kernel"
    GOVERNED = "governed"
    DRAFT = "draft"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class EntityStatus(StrEnum):
    ACTIVE = "active"
    DRAFT = "draft"
    DEPRECATED = "deprecated"


class Trigger(StrEnum):
    """What asked for a profile; recorded on it."""

    APPROVAL = "approval"
    SCHEDULE = "schedule"
    MANUAL = "manual"
    PREVIEW = "preview"


class ProfileReason(StrEnum):
    """Why a profile is due."""

    STRUCTURAL = "STRUCTURAL"
    KPI_DEPENDENCY = "KPI_DEPENDENCY"
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"


class Priority(StrEnum):
    """How soon a due profile runs: tier1 approvals and manual requests first."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _PRIORITY_ORDER.index(self)

    @classmethod
    def highest(cls, priorities: Iterable[Priority]) -> Priority:
        return min(priorities, key=lambda priority: priority.rank)


_PRIORITY_ORDER = (Priority.HIGH, Priority.NORMAL, Priority.LOW)


class SkipReason(StrEnum):
    """Why a due profile was not run (a cost guard)."""

    COST_GUARD = "COST_GUARD"
    NO_BINDING = "NO_BINDING"
