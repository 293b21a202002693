"""Per-tenant policies."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import insert, select, update

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories.shared import Repository
from mdstudio_core.domain.model import Lane


class PolicyRepository(Repository):
    """Per-tenant overrides of who approves which lane and tier."""

    def overrides(self, tenant_id: uuid.UUID) -> dict[tuple[str, str], str]:
        """{(lane, tier or "*"): required_role} for the tenant."""
        column = tables.approval_policies.c
        rows = self._connection.execute(
            select(column.lane, column.tier, column.required_role).where(
                column.tenant_id == tenant_id
            )
        )
        return {(row.lane, row.tier): row.required_role for row in rows}

    def approval_counts(self, tenant_id: uuid.UUID) -> dict[tuple[str, str], int]:
        """{(lane, tier or "*"): approvers} for the tenant's overrides."""
        column = tables.approval_policies.c
        rows = self._connection.execute(
            select(column.lane, column.tier, column.approvals).where(column.tenant_id == tenant_id)
        )
        return {(row.lane, row.tier): row.approvals for row in rows}

    def set_approvals(self, tenant_id: uuid.UUID, lane: Lane, tier: str, approvals: int) -> None:
        """How many approvers the (existing) override of (lane, tier) asks for."""
        column = tables.approval_policies.c
        self._connection.execute(
            update(tables.approval_policies)
            .where(column.tenant_id == tenant_id, column.lane == lane.value, column.tier == tier)
            .values(approvals=approvals)
        )

    def set(
        self,
        tenant_id: uuid.UUID,
        lane: Lane,
        tier: str,
        required_role: str,
        actor: str,
        at: dt.datetime,
    ) -> None:
        column = tables.approval_policies.c
        key = (column.tenant_id == tenant_id, column.lane == lane.value, column.tier == tier)
        values = {"required_role": required_role, "updated_at": at, "updated_by": actor}
        if not self._connection.execute(
            update(tables.approval_policies).where(*key).values(values)
        ).rowcount:
            self._connection.execute(
                insert(tables.approval_policies).values(
                    tenant_id=tenant_id, lane=lane.value, tier=tier, **values
                )
            )
