"""Approval deadlines: how long a request may wait for its decision, per tier, and the one
`approval.overdue` event a request still pending past its deadline gets. Nothing here touches
a store; the Dagster daemon's `approval_deadline_sensor` writes the events
(`service_layer.deadlines`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from mdstudio_core.domain.approval_events import request_event, request_fields
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.events import ApprovalOverdue, EventType, NewEvent
from mdstudio_core.domain.model import Tier


@dataclasses.dataclass(frozen=True)
class ApprovalDeadlines:
    """The time a request of each tier may stay pending (`MDSTUDIO_APPROVAL_SLA_HOURS` and
    `MDSTUDIO_<TIER>_APPROVAL_SLA_HOURS`); a tier absent from `slas` has no deadline. A change
    set's tier is its strictest item's."""

    slas: Mapping[Tier, dt.timedelta] = dataclasses.field(default_factory=dict)

    def deadline(self, tier: Tier | str, requested_at: dt.datetime) -> dt.datetime | None:
        sla = self.slas.get(Tier(tier))
        return requested_at + sla if sla is not None else None

    def overdue(self, tier: Tier | str, requested_at: dt.datetime, now: dt.datetime) -> bool:
        deadline = self.deadline(tier, requested_at)
        return deadline is not None and deadline <= now

    def requested_before(self, now: dt.datetime) -> dict[Tier, dt.datetime]:
        """Per tier with a deadline: a request of it requested at or before this is overdue."""
        return {tier: now - sla for tier, sla in self.slas.items()}

    def overdue_event(self, approval: Approval, now: dt.datetime) -> NewEvent:
        """`approval.overdue` for a pending request past its deadline."""
        sla = self.slas[approval.tier]
        return request_event(
            approval,
            EventType.APPROVAL_OVERDUE,
            now,
            ApprovalOverdue(
                **request_fields(approval),
                requested_at=approval.requested_at,
                deadline=approval.requested_at + sla,
                sla_hours=sla.total_seconds() / 3600,
            ),
            actor="approval_deadline_sensor",
        )
