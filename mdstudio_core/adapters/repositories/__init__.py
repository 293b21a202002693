"""Repositories: the only code that writes SQL against the store. Each works on the connection of
one unit of work, so whatever they do commits or rolls back together. A module per aggregate;
the names are re-exported here, where the unit of work takes them from."""

from mdstudio_core.adapters.repositories.approvals import ApprovalRepository, ChangeSetRepository
from mdstudio_core.adapters.repositories.console_sessions import ConsoleSessionRepository
from mdstudio_core.adapters.repositories.consumers import (
    ConsumerCursors,
    DeadLetterRepository,
    EventArchiveRepository,
)
from mdstudio_core.adapters.repositories.entities import EntityRepository
from mdstudio_core.adapters.repositories.idempotency import PURGE_BATCH, IdempotencyKeyRepository
from mdstudio_core.adapters.repositories.incidents import IncidentRepository
from mdstudio_core.adapters.repositories.lineage import LineageRepository
from mdstudio_core.adapters.repositories.metrics import (
    CatalogMetrics,
    profile_outcome_counts,
)
from mdstudio_core.adapters.repositories.notifications import NotificationRepository
from mdstudio_core.adapters.repositories.outbox import EventOutbox
from mdstudio_core.adapters.repositories.policies import PolicyRepository
from mdstudio_core.adapters.repositories.profiles import (
    ProfileDayRepository,
    ProfilePassRepository,
    ProfileRepository,
    ProfileStateRepository,
)
from mdstudio_core.adapters.repositories.shared import insert_rows
from mdstudio_core.adapters.repositories.tokens import TokenRepository

__all__ = [
    "PURGE_BATCH",
    "ApprovalRepository",
    "CatalogMetrics",
    "ChangeSetRepository",
    "ConsoleSessionRepository",
    "ConsumerCursors",
    "DeadLetterRepository",
    "EntityRepository",
    "EventArchiveRepository",
    "EventOutbox",
    "IdempotencyKeyRepository",
    "IncidentRepository",
    "LineageRepository",
    "NotificationRepository",
    "PolicyRepository",
    "ProfileDayRepository",
    "ProfilePassRepository",
    "ProfileRepository",
    "ProfileStateRepository",
    "TokenRepository",
    "insert_rows",
    "profile_outcome_counts",
]
