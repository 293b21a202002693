"""A unit of work is one database transaction: everything done through it commits together or
not at all. Services open one per command."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import TracebackType

from sqlalchemy import Connection, Engine

from mdstudio_core.adapters.repositories import (
    ApprovalRepository,
    CatalogMetrics,
    ChangeSetRepository,
    ConsoleSessionRepository,
    ConsumerCursors,
    DeadLetterRepository,
    EntityRepository,
    EventArchiveRepository,
    EventOutbox,
    IdempotencyKeyRepository,
    IncidentRepository,
    LineageRepository,
    NotificationRepository,
    PolicyRepository,
    ProfileDayRepository,
    ProfilePassRepository,
    ProfileRepository,
    ProfileStateRepository,
    TokenRepository,
)


class UnitOfWork:
    """`with UnitOfWork(engine) as uow: ...; uow.commit()`. Leaving the block without `commit()`
    (or by an exception) rolls everything back, so a failed step never leaves half a change.

    Each outermost `with` is one transaction. A `with` inside another joins it: the HTTP layer
    looks a token up and runs the command it authorises in one transaction (one connection,
    one BEGIN), and the command's own `with uow:` does not know the difference."""

    connection: Connection
    approvals: ApprovalRepository
    change_sets: ChangeSetRepository
    console_sessions: ConsoleSessionRepository
    entities: EntityRepository
    events: EventOutbox
    idempotency_keys: IdempotencyKeyRepository
    incidents: IncidentRepository
    lineage: LineageRepository
    notifications: NotificationRepository
    cursors: ConsumerCursors
    dead_letters: DeadLetterRepository
    archives: EventArchiveRepository
    metrics: CatalogMetrics
    passes: ProfilePassRepository
    policies: PolicyRepository
    profiles: ProfileRepository
    profile_days: ProfileDayRepository
    profile_states: ProfileStateRepository
    tokens: TokenRepository

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._depth = 0
        self._commits_held = False

    def __enter__(self) -> UnitOfWork:
        if self._depth == 0:
            self.connection = self._engine.connect()
            self._transaction = self.connection.begin()
            self.approvals = ApprovalRepository(self.connection)
            self.change_sets = ChangeSetRepository(self.connection)
            self.console_sessions = ConsoleSessionRepository(self.connection)
            self.entities = EntityRepository(self.connection)
            self.events = EventOutbox(self.connection)
            self.idempotency_keys = IdempotencyKeyRepository(self.connection)
            self.incidents = IncidentRepository(self.connection)
            self.lineage = LineageRepository(self.connection)
            self.notifications = NotificationRepository(self.connection)
            self.cursors = ConsumerCursors(self.connection)
            self.dead_letters = DeadLetterRepository(self.connection)
            self.archives = EventArchiveRepository(self.connection)
            self.metrics = CatalogMetrics(self.connection)
            self.passes = ProfilePassRepository(self.connection)
            self.policies = PolicyRepository(self.connection)
            self.profiles = ProfileRepository(self.connection)
            self.profile_days = ProfileDayRepository(self.connection)
            self.profile_states = ProfileStateRepository(self.connection)
            self.tokens = TokenRepository(self.connection)
        self._depth += 1
        return self

    def commit(self) -> None:
        if not self._commits_held:
            self._transaction.commit()

    @contextlib.contextmanager
    def held_commits(self) -> Iterator[None]:
        """Inside, `commit()` does nothing: the commands run there and what the caller writes
        after them commit together, at the caller's own `commit()` (an idempotency key's answer
        is stored in the transaction that did the work)."""
        self._commits_held = True
        try:
            yield
        finally:
            self._commits_held = False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth:
            return
        try:
            if self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self.connection.close()
