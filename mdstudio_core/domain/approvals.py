"""The `Approval` aggregate: a change request and its transitions.

A change is a request (`Approval.submit`); a second person holding the required role decides it
(`approve` / `reject`), or its author withdraws it (`cancel`). Each decision is a transition of
the `Approval` aggregate that checks its rules (pending, four-eyes, role, staleness) and returns
the decided request with the events it produces; the service layer applies both in one
transaction. The rules live beside it: who decides (`approval_policy`), what a request may carry
(`approval_requests`), what a decision announces (`approval_events`). Nothing here touches a
database, so every rule is unit-tested without one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import orjson

from mdstudio_core.domain.approval_events import approval_events, decision_event, endorsement_event
from mdstudio_core.domain.approval_policy import (
    TIER_LANE,
    ApprovalCounts,
    Cell,
    PolicyOverrides,
    cell_role,
    check_approvals_count,
    check_may_preview_entity,
    check_policy_change,
    effective_approvals,
    effective_policy,
    required_approvals,
    required_cell,
    required_role,
    strictness,
    touched_tier,
)
from mdstudio_core.domain.approval_requests import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_JSON_DEPTH,
    check_depth,
    check_no_nul,
    check_reason,
    field_binding_change,
    parse_approval_id,
    rejection_reason,
    validate_request,
)
from mdstudio_core.domain.enums import ApprovalStatus, EntityStatus, EntityType, Lane, Tier
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput
from mdstudio_core.domain.events import EventType, NewEvent
from mdstudio_core.domain.model import BOOKKEEPING_FIELDS, TENANT_ADMIN_ROLE, Identity, LiveEntity
from mdstudio_core.domain.payloads import STRUCTURAL_FIELDS, ApprovalRequest

# Rules re-exported for callers outside the domain that still import them from here.
__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "MAX_JSON_DEPTH",
    "Approval",
    "ApprovalListing",
    "Endorsement",
    "check_approvals_count",
    "check_depth",
    "check_may_preview_entity",
    "check_no_nul",
    "check_policy_change",
    "check_reason",
    "effective_approvals",
    "effective_policy",
    "field_binding_change",
    "parse_approval_id",
    "required_approvals",
    "required_role",
    "validate_request",
]


# -- listings --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ApprovalListing:
    """A request as an inbox lists it: its fields but the two large ones in `summary`, and its
    payload and current state as their stored JSON text, only when asked for: the text passes
    through untouched, never parsed only to be serialised again (bench/list_memory.py)."""

    summary: dict[str, Any]
    payload_json: str | None = None
    current_state_json: str | None = None

    @property
    def id(self) -> uuid.UUID:
        return self.summary["id"]  # type: ignore[no-any-return]

    def as_dict(self, include_payload: bool) -> dict[str, Any]:
        """The JSON form: the summary, and with `include_payload` the two large fields
        embedded as they are stored."""
        if not include_payload:
            return self.summary
        return {
            **self.summary,
            "payload": orjson.Fragment(self.payload_json or "null"),
            "current_state": orjson.Fragment(self.current_state_json or "null"),
        }


@dataclasses.dataclass(frozen=True)
class Endorsement:
    """One approver's approval of a request that needs more approvers than have approved so
    far: recorded, and the request stays pending (`approval.endorsed`)."""

    user: str
    at: dt.datetime
    reason: str | None = None


# -- the aggregate -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Approval:
    """One change request (a row of `mdm_approval`) and its transitions: pending, then exactly
    one of approved, rejected or cancelled."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    entity_type: EntityType
    entity_id: uuid.UUID | None
    entity_key: str
    tier: Tier
    lane: Lane
    payload: dict[str, Any]
    current_state: dict[str, Any] | None
    status: ApprovalStatus
    decision_reason: str | None
    requested_by: str
    decided_by: str | None
    requested_at: dt.datetime
    decided_at: dt.datetime | None
    required_role: str
    # Distinct approvers holding the role who must approve (the policy's `--approvals`): each
    # approval before the last is an endorsement; the last applies the request.
    required_approvals: int = 1
    overdue_at: dt.datetime | None = None  # when `approval.overdue` was written
    endorsements: tuple[Endorsement, ...] = ()

    @classmethod
    def submit(
        cls,
        request: ApprovalRequest,
        state: dict[str, Any],
        requester: Identity,
        live: LiveEntity | None,
        overrides: PolicyOverrides,
        now: dt.datetime,
        breaks_tier1_kpi: bool = False,
        approval_counts: ApprovalCounts | None = None,
    ) -> Approval:
        """A pending request (as `validate_request` returns it), made against `live` (the
        entity as it is now, or None when it is new), with the role its lane, its tier and the
        live entity's tier require (and tier1's when `breaks_tier1_kpi`), and as many approvers
        as `approval_counts` give that cell. The draft lane only creates or edits drafts: a
        draft becomes active through the lane of its tier."""
        assert request.entity_key is not None
        if request.lane is Lane.DRAFT:
            if state.get("status") != EntityStatus.DRAFT.value:
                raise InvalidInput(
                    "the draft lane only keeps drafts: set payload.status to draft, or "
                    f"submit through the {TIER_LANE[request.tier].value} lane to make it live",
                    field="lane",
                )
            if live is not None and live.status is not EntityStatus.DRAFT:
                raise InvalidInput(
                    f"{live.canonical_key} is {live.status.value}: the draft lane only edits "
                    f"drafts; submit through the {TIER_LANE[live.tier].value} lane",
                    field="lane",
                )
        # Deprecating or unbinding a field an active tier1 KPI depends on is a tier1 change.
        cell = required_cell(request.lane, request.tier, touched_tier(live, breaks_tier1_kpi))
        return cls.pending(
            requester,
            now,
            entity_type=request.entity_type,
            entity_id=live.id if live else uuid.uuid4(),
            entity_key=request.entity_key,
            cell=(request.lane, request.tier),
            payload=state,
            current_state=live.as_dict() if live else None,
            required_role=cell_role(cell, overrides),
            required_approvals=required_approvals(cell, approval_counts or {}),
        )

    @classmethod
    def pending(
        cls,
        requester: Identity,
        now: dt.datetime,
        *,
        entity_type: EntityType,
        entity_id: uuid.UUID | None,
        entity_key: str,
        cell: Cell,
        payload: dict[str, Any],
        current_state: dict[str, Any] | None,
        required_role: str,
        required_approvals: int,
    ) -> Approval:
        """A new request by `requester` on `cell`'s lane and tier, nothing decided yet (a
        single request's, or a change set's)."""
        lane, tier = cell
        return cls(
            id=uuid.uuid4(),
            tenant_id=requester.tenant_id,
            entity_type=entity_type,
            entity_id=entity_id,
            entity_key=entity_key,
            tier=tier,
            lane=lane,
            payload=payload,
            current_state=current_state,
            status=ApprovalStatus.PENDING,
            decision_reason=None,
            requested_by=requester.user,
            decided_by=None,
            requested_at=now,
            decided_at=None,
            required_role=required_role,
            required_approvals=required_approvals,
        )

    def judged_again(
        self,
        live: LiveEntity | None,
        overrides: PolicyOverrides,
        breaks_tier1_kpi: bool,
        approval_counts: ApprovalCounts | None = None,
    ) -> Approval:
        """The request with the role its decision needs now. The rule of `submit` is applied
        again to the live state (`live`, and whether the change would now break an active tier1
        KPI); when what the change touches now is stricter than what it touched when submitted
        (a tier1 KPI on the field was approved since, say), the role for that applies, and its
        approver count if larger; otherwise the role given at submission stays (the stricter of
        the two)."""
        submitted_tier = Tier(self.current_state["tier"]) if self.current_state else None
        then = required_cell(self.lane, self.tier, submitted_tier)
        now = required_cell(self.lane, self.tier, touched_tier(live, breaks_tier1_kpi))
        return self.stricter(then, now, overrides, approval_counts or {})

    def stricter(
        self, then: Cell, now: Cell, overrides: PolicyOverrides, approval_counts: ApprovalCounts
    ) -> Approval:
        """The request decided by `now` when it is stricter than `then` (the cell that decided
        it at submission): its role, and its approver count if larger; else as it is."""
        if strictness(now) >= strictness(then):
            return self
        return dataclasses.replace(
            self,
            required_role=cell_role(now, overrides),
            required_approvals=max(
                self.required_approvals, required_approvals(now, approval_counts)
            ),
        )

    @property
    def base_version(self) -> int | None:
        """The version of the entity the request was made against (None: a new entity)."""
        return self.current_state["version"] if self.current_state else None

    @property
    def new_version(self) -> int:
        return (self.base_version or 0) + 1

    def approve(
        self, decider: Identity, live: LiveEntity | None, now: dt.datetime, reason: str | None
    ) -> tuple[Approval, list[NewEvent]]:
        """Approve: pending, not the requester's own, the required role, and the live entity
        still exactly the state the request was made against (else it is stale: a conflict,
        nothing is overwritten). Returns the decided request and its events, in order. While
        fewer approvers than `required_approvals` have approved, the approval is an
        endorsement: the request stays pending, with one more endorsement."""
        self._check_pending()
        self._check_may_decide(decider)
        live_version = live.version if live else None
        if live_version != self.base_version:
            raise Conflict(self.stale_message())
        self._check_not_endorsed(decider)
        if len(self.endorsements) + 1 < self.required_approvals:
            return self._endorsed(decider, now, reason)
        decided = self._decided(ApprovalStatus.APPROVED, decider, now, reason)
        return decided, approval_events(decided, now)

    def reject(
        self, decider: Identity, now: dt.datetime, reason: str | None
    ) -> tuple[Approval, list[NewEvent]]:
        """Turn the request down; the reason is mandatory so the requester learns why."""
        reason = rejection_reason(reason)
        self._check_pending()
        self._check_may_decide(decider)
        decided = self._decided(ApprovalStatus.REJECTED, decider, now, reason)
        return decided, [decision_event(decided, EventType.APPROVAL_REJECTED, now)]

    def cancel(
        self, actor: Identity, now: dt.datetime, reason: str | None
    ) -> tuple[Approval, list[NewEvent]]:
        """Withdraw one's own pending request."""
        self._check_pending()
        if self.requested_by != actor.user:
            raise Forbidden(f"only the requester ({self.requested_by}) may cancel this request")
        decided = self._decided(ApprovalStatus.CANCELLED, actor, now, reason)
        return decided, [decision_event(decided, EventType.APPROVAL_CANCELLED, now)]

    def check_may_preview(self, viewer: Identity) -> None:
        """Evidence (a profile of the proposed binding) is for those who may decide: the
        required role, or a tenant admin. Anyone else could read a bound column's values by
        submitting bindings with rules and previewing them."""
        if self.required_role not in viewer.roles and TENANT_ADMIN_ROLE not in viewer.roles:
            raise Forbidden(
                f"role {self.required_role} (or {TENANT_ADMIN_ROLE}) is required to preview "
                f"this request (you have: {', '.join(sorted(viewer.roles)) or 'none'})"
            )

    def binding_change(self) -> str | None:
        """How the request changes a bound field's binding: `deprecated`, `unbound`,
        `rebound`, or None (not a metadata field, not bound, or the binding unchanged)."""
        old = self.current_state or {}
        if self.entity_type is not EntityType.GLOBAL_METADATA or not old.get("binding"):
            return None
        return field_binding_change(old, self.payload)

    def stale_message(self) -> str:
        return (
            f"stale request: {self.entity_type.value} {self.entity_key} changed after "
            f"approval {self.id} was submitted; submit a new request against the current state"
        )

    # -- rules ---------------------------------------------------------------------------

    def _check_pending(self) -> None:
        if self.status is not ApprovalStatus.PENDING:
            raise Conflict(
                f"approval {self.id} is already {self.status.value}"
                + (f" by {self.decided_by}" if self.decided_by else "")
            )

    def _check_may_decide(self, decider: Identity) -> None:
        """Four-eyes, then role: the requester never decides their own request."""
        if self.requested_by == decider.user:
            raise Forbidden(
                "four-eyes rule: the requester may not decide their own request (cancel it instead)"
            )
        if self.required_role not in decider.roles:
            raise Forbidden(
                f"role {self.required_role} is required to decide this request "
                f"(you have: {', '.join(sorted(decider.roles)) or 'none'})"
            )

    def _decided(
        self, status: ApprovalStatus, actor: Identity, now: dt.datetime, reason: str | None
    ) -> Approval:
        return dataclasses.replace(
            self, status=status, decided_by=actor.user, decided_at=now, decision_reason=reason
        )

    # -- events --------------------------------------------------------------------------

    def changed_fields(self) -> list[str]:
        """The governed fields the request changes (every field, for a new entity)."""
        old = {
            name: value
            for name, value in (self.current_state or {}).items()
            if name not in BOOKKEEPING_FIELDS
        }
        return sorted(
            name for name in set(self.payload) | set(old) if self.payload.get(name) != old.get(name)
        )

    def is_structural(self) -> bool:
        """New, or a change to what a profile measures (binding, data type, ...)."""
        return self.current_state is None or bool(
            set(self.changed_fields()) & STRUCTURAL_FIELDS[self.entity_type]
        )

    # -- two-person rules ----------------------------------------------------------------

    @property
    def endorsers(self) -> list[str]:
        return [endorsement.user for endorsement in self.endorsements]

    @property
    def approvals_missing(self) -> int:
        """How many more approvals the request needs (the last of them applies it)."""
        return max(self.required_approvals - len(self.endorsements), 0)

    def _check_not_endorsed(self, decider: Identity) -> None:
        """An approver counts once: approving again after endorsing is a conflict."""
        if decider.user in self.endorsers:
            raise Conflict(
                f"{decider.user} has already endorsed approval {self.id}; it needs "
                f"{self.approvals_missing} more approval(s) from other holders of "
                f"{self.required_role}"
            )

    def _endorsed(
        self, decider: Identity, now: dt.datetime, reason: str | None
    ) -> tuple[Approval, list[NewEvent]]:
        """The request, still pending, with `decider`'s endorsement added, and its
        `approval.endorsed` event."""
        endorsement = Endorsement(decider.user, now, reason)
        endorsed = dataclasses.replace(self, endorsements=(*self.endorsements, endorsement))
        return endorsed, [endorsement_event(endorsed, decider, now, reason)]
