"""Approval deadlines: mark the requests still pending past their deadline, each once, with an
`approval.overdue` event (notifications can subscribe to it). The Dagster daemon's
`approval_deadline_sensor` calls `mark_overdue` on every tick."""

from __future__ import annotations

import datetime as dt

from mdstudio_core.config import Settings
from mdstudio_core.domain import clock
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

# Requests marked per tier and tick at most: a backlog drains over a few ticks, each well
# inside Dagster's 60 s evaluation limit.
MAX_PER_TICK = 2000


def mark_overdue(
    uow: UnitOfWork, settings: Settings, now: dt.datetime | None = None
) -> list[Approval]:
    """Write `approval.overdue` for every pending request past its deadline that has none yet
    (every tenant's), oldest first, and note it on the request, in one transaction: a retried
    or concurrent tick writes no event twice (the rows are locked and marked)."""
    now = now or clock.now()
    deadlines = settings.approval_deadlines
    marked: list[Approval] = []
    with uow:
        for tier, before in deadlines.requested_before(now).items():
            due = uow.approvals.due(tier, before, MAX_PER_TICK)
            if due:
                uow.approvals.mark_overdue([approval.id for approval in due], now)
                marked.extend(due)
        uow.events.append([deadlines.overdue_event(approval, now) for approval in marked])
        uow.commit()
    return marked
