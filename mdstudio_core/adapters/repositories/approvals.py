"""Approval requests, their endorsements and the change sets that file them in bulk."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Text, and_, cast, func, insert, select, update

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository, insert_rows
from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.approvals import Approval, ApprovalListing, Endorsement
from mdstudio_core.domain.model import ApprovalStatus, EntityType, Lane, Tier


def _approval_from_row(row: Row[Any]) -> Approval:
    values = row._asdict()
    return Approval(
        **values
        | {
            "entity_type": EntityType(row.entity_type),
            "tier": Tier(row.tier),
            "lane": Lane(row.lane),
            "status": ApprovalStatus(row.status),
        }
    )


# The fields of an approval stored in its own row (endorsements have a table of their own).
_APPROVAL_COLUMNS = frozenset(tables.approvals.c.keys())


class ApprovalRepository(Repository):
    def add(self, approval: Approval) -> None:
        values = {
            field.name: getattr(approval, field.name)
            for field in dataclasses.fields(approval)
            if field.name in _APPROVAL_COLUMNS
        }
        self._connection.execute(insert(tables.approvals).values(values))

    def get(
        self, tenant_id: uuid.UUID, approval_id: uuid.UUID, *, for_update: bool = False
    ) -> Approval | None:
        """One request of the tenant. `for_update` locks the row (PostgreSQL) so that racing
        deciders queue behind each other and the loser sees the winner's decision."""
        query = select(tables.approvals).where(
            tables.approvals.c.id == approval_id, tables.approvals.c.tenant_id == tenant_id
        )
        if for_update:
            query = query.with_for_update()
        row = self._connection.execute(query).first()
        if row is None:
            return None
        approval = _approval_from_row(row)
        if approval.required_approvals > 1:
            endorsements = self.endorsements_of(tenant_id, [approval.id]).get(approval.id, ())
            approval = dataclasses.replace(approval, endorsements=endorsements)
        return approval

    def endorse(self, approval: Approval, endorsement: Endorsement) -> None:
        """Record an endorsement (an approver endorsing twice breaks the primary key), and the
        role and approver count the request was endorsed under: when the decision judged it
        stricter than at submission, the stricter ones stay (and its endorsements are read
        back with it from then on)."""
        self._connection.execute(
            update(tables.approvals)
            .where(tables.approvals.c.id == approval.id)
            .values(
                required_role=approval.required_role,
                required_approvals=approval.required_approvals,
            )
        )
        self._connection.execute(
            insert(tables.approval_endorsements).values(
                approval_id=approval.id,
                endorsed_by=endorsement.user,
                tenant_id=approval.tenant_id,
                endorsed_at=endorsement.at,
                reason=endorsement.reason,
            )
        )

    def endorsements_of(
        self, tenant_id: uuid.UUID, approval_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[Endorsement, ...]]:
        """The endorsements of these requests of the tenant, oldest first; those with none
        are absent."""
        column = tables.approval_endorsements.c
        found: dict[uuid.UUID, list[Endorsement]] = {}
        for start in range(0, len(approval_ids), 500):
            rows = self._connection.execute(
                select(column.approval_id, column.endorsed_by, column.endorsed_at, column.reason)
                .where(
                    column.tenant_id == tenant_id,
                    column.approval_id.in_(approval_ids[start : start + 500]),
                )
                .order_by(column.endorsed_at, column.endorsed_by)
            )
            for row in rows:
                found.setdefault(row.approval_id, []).append(
                    Endorsement(row.endorsed_by, row.endorsed_at, row.reason)
                )
        return {approval_id: tuple(found_) for approval_id, found_ in found.items()}

    def due(self, tier: Tier, requested_before: dt.datetime, limit: int) -> list[Approval]:
        """Pending requests of `tier` (every tenant's) requested before `requested_before`
        and not yet marked overdue, oldest first; locked, skipping any a decision holds
        (PostgreSQL; SQLite serialises writers)."""
        column = tables.approvals.c
        query = (
            select(tables.approvals)
            .where(
                column.status == ApprovalStatus.PENDING.value,
                column.overdue_at.is_(None),
                column.tier == tier.value,
                column.requested_at <= requested_before,
            )
            .order_by(column.requested_at, column.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_approval_from_row(row) for row in self._connection.execute(query)]

    def mark_overdue(self, approval_ids: Sequence[uuid.UUID], at: dt.datetime) -> None:
        """Note when `approval.overdue` was written for these requests (once each)."""
        column = tables.approvals.c
        self._connection.execute(
            update(tables.approvals)
            .where(column.id.in_(approval_ids), column.overdue_at.is_(None))
            .values(overdue_at=at)
        )

    def record_decision(self, decided: Approval) -> bool:
        """Store a decided request if it is still pending, with the role that decided it;
        False when it was not (the compare-and-set that makes a second decision impossible on
        every backend)."""
        result = self._connection.execute(
            update(tables.approvals)
            .where(
                tables.approvals.c.id == decided.id,
                tables.approvals.c.status == ApprovalStatus.PENDING.value,
            )
            .values(
                status=decided.status.value,
                required_role=decided.required_role,
                decided_by=decided.decided_by,
                decided_at=decided.decided_at,
                decision_reason=decided.decision_reason,
            )
        )
        return result.rowcount == 1

    def list(self, tenant_id: uuid.UUID, wanted: ApprovalFilter) -> list[ApprovalListing]:
        """The inbox as `wanted` filters it, served by the (tenant, status, requested_at) index.
        The payload and current state are read as JSON text, and only if `wanted` includes
        them."""
        column = tables.approvals.c
        filters = [column.tenant_id == tenant_id]
        if wanted.required_roles is not None:
            filters.append(column.required_role.in_(sorted(wanted.required_roles)))
        if wanted.requested_by is not None:
            filters.append(column.requested_by == wanted.requested_by)
        if wanted.not_requested_by is not None:
            filters.append(column.requested_by != wanted.not_requested_by)
        for value, col in (
            (wanted.status, column.status),
            (wanted.entity_type, column.entity_type),
            (wanted.tier, column.tier),
            (wanted.lane, column.lane),
        ):
            if value is not None:
                filters.append(col == value.value)
        if wanted.entity_key is not None:
            filters.append(column.entity_key == wanted.entity_key)
        selected = [c for c in tables.approvals.c if c.name not in ("payload", "current_state")]
        if wanted.include_payload:
            selected += [
                cast(column.payload, Text).label("payload_json"),
                cast(column.current_state, Text).label("current_state_json"),
            ]
        query = (
            select(*selected)
            .where(and_(*filters))
            .order_by(
                *(
                    (column.requested_at, column.id)
                    if wanted.oldest_first
                    else (column.requested_at.desc(), column.id.desc())
                )
            )
            .limit(wanted.limit)
            .offset(wanted.offset)
        )
        listings = []
        for row in self._connection.execute(query):
            summary = row._asdict()
            listings.append(
                ApprovalListing(
                    summary,
                    payload_json=summary.pop("payload_json", None),
                    current_state_json=summary.pop("current_state_json", None),
                )
            )
        return listings


class ChangeSetRepository(Repository):
    """`mdm_change_set_item`: the items of each change set, by number."""

    def add_items(self, change_set: Approval, items: Sequence[Approval]) -> None:
        """Store the items of `change_set` (already added as an approval), numbered from 1."""
        insert_rows(
            self._connection,
            tables.change_set_items,
            [
                {
                    "change_set_id": change_set.id,
                    "position": number,
                    "tenant_id": change_set.tenant_id,
                    "entity_type": item.entity_type.value,
                    "entity_id": item.entity_id,
                    "entity_key": item.entity_key,
                    "tier": item.tier.value,
                    "lane": item.lane.value,
                    "payload": item.payload,
                    "current_state": item.current_state,
                    "required_role": item.required_role,
                }
                for number, item in enumerate(items, 1)
            ],
        )

    def items(self, change_set: Approval) -> list[Approval]:
        """The set's items in order, each a request of the set's (its id, requester, status)
        with the item's own change and the role it would need alone."""
        column = tables.change_set_items.c
        rows = self._connection.execute(
            select(tables.change_set_items)
            .where(column.change_set_id == change_set.id, column.tenant_id == change_set.tenant_id)
            .order_by(column.position)
        )
        return [
            dataclasses.replace(
                change_set,
                entity_type=EntityType(row.entity_type),
                entity_id=row.entity_id,
                entity_key=row.entity_key,
                tier=Tier(row.tier),
                lane=Lane(row.lane),
                payload=row.payload,
                current_state=row.current_state,
                required_role=row.required_role,
                required_approvals=1,
                endorsements=(),
            )
            for row in rows
        ]

    def counts(
        self, tenant_id: uuid.UUID, change_set_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        """How many items each of these sets of the tenant holds (a request that is no set is
        absent)."""
        column = tables.change_set_items.c
        if not change_set_ids:
            return {}
        rows = self._connection.execute(
            select(column.change_set_id, func.count())
            .where(column.tenant_id == tenant_id, column.change_set_id.in_(change_set_ids))
            .group_by(column.change_set_id)
        )
        return {set_id: count for set_id, count in rows}
