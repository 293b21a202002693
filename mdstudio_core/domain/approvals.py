"""The approval rules: every rule about who may change the catalog, and how, lives here.

A change is a request (`Approval.submit`); a second person holding the required role decides it
(`approve` / `reject`), or its author withdraws it (`cancel`). Each decision is a transition of
the `Approval` aggregate that checks its rules (pending, four-eyes, role, staleness) and returns
the decided request with the events it produces; the service layer applies both in one
transaction. Nothing here touches a database, so every rule is unit-tested without one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from mdstudio_core.domain.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    PayloadTooLarge,
    field_path,
)
from mdstudio_core.domain.events import NewEvent, validate_event
from mdstudio_core.domain.lineage import input_changes
from mdstudio_core.domain.model import (
    BOOKKEEPING_FIELDS,
    KEY_FIELD,
    PAYLOAD_MODELS,
    STRUCTURAL_FIELDS,
    TERM_PATTERN,
    ApprovalRequest,
    ApprovalStatus,
    Binding,
    EntityStatus,
    EntityType,
    Identity,
    Lane,
    LiveEntity,
    Priority,
    ProfileReason,
    Tier,
    parse_id,
)

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
# Changing who approves is itself privileged.
POLICY_ADMIN_ROLE = "tenant_admin"
# The roles of the approval workflow: who may ask for evidence on a live entity.
WORKFLOW_ROLES = frozenset({*DEFAULT_REQUIRED_ROLE.values(), POLICY_ADMIN_ROLE})
# Entity types whose approval announces the entity's new state, and the event prefix used.
ENTITY_EVENT_PREFIX: dict[EntityType, str] = {
    EntityType.GLOBAL_METADATA: "metadata",
    EntityType.KPI: "kpi",
}
# Tiers whose structural changes ask for a profile, and how urgently.
PROFILED_TIERS: dict[Tier, Priority] = {Tier.TIER1: Priority.HIGH, Tier.TIER2: Priority.NORMAL}
ROLE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# Bounds on what a request may carry. A real payload nests about six levels deep (request,
# payload, binding, columns, a column, its allowed values).
MAX_JSON_DEPTH = 32
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024

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
    if POLICY_ADMIN_ROLE not in identity.roles:
        raise Forbidden(f"changing the approval policy requires the {POLICY_ADMIN_ROLE} role")
    role = role.strip()
    if not ROLE_PATTERN.match(role):
        raise InvalidInput("must be a role name (letters, digits, _ or -)", field="required_role")
    return role


# -- requests ------------------------------------------------------------------------------


def validate_request(
    raw: Mapping[str, Any], max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
) -> tuple[ApprovalRequest, dict[str, Any]]:
    """Parse a submitted request; return it with the entity's normalised new state.

    Raises `InvalidInput` naming the first offending field (e.g. `payload.binding.columns[0].name`),
    and `PayloadTooLarge` for a payload over `max_payload_bytes` of JSON.
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput("the request must be a JSON object", field="request")
    check_depth(raw)
    try:
        size = len(orjson.dumps(raw.get("payload"), option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise InvalidInput(f"is not storable JSON: {exc}", field="payload") from None
    if size > max_payload_bytes:
        raise PayloadTooLarge(
            f"is {size} bytes of JSON, more than the {max_payload_bytes} allowed "
            "(MDSTUDIO_MAX_PAYLOAD_BYTES)",
            field="payload",
        )
    check_no_nul(raw, "")
    try:
        request = ApprovalRequest.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    if request.lane not in ALLOWED_LANES[request.tier]:
        raise InvalidInput(
            f"{request.tier.value} changes go through the "
            f"{' or '.join(sorted(lane.value for lane in ALLOWED_LANES[request.tier]))} lane",
            field="lane",
        )
    model = PAYLOAD_MODELS[request.entity_type]
    try:
        payload: BaseModel = model.model_validate(request.payload)
    except ValidationError as exc:
        raise _invalid(exc, prefix="payload") from exc

    key_field = KEY_FIELD[request.entity_type]
    payload_key = getattr(payload, key_field)
    if request.entity_type is EntityType.GLOSSARY:
        entity_key = request.entity_key or payload_key
        _check_glossary_key(entity_key)
    else:
        if request.entity_key is not None and request.entity_key != payload_key:
            raise InvalidInput(
                f"does not match payload.{key_field} ({payload_key!r})", field="entity_key"
            )
        entity_key = payload_key
    payload_tier = getattr(payload, "tier", request.tier)
    if payload_tier != request.tier:
        raise InvalidInput(
            f"{payload_tier.value} does not match the request's tier {request.tier.value}",
            field="payload.tier",
        )

    state = payload.model_dump(mode="json", by_alias=True)
    if isinstance(getattr(payload, "binding", None), Binding):
        state["binding"] = payload.binding.to_json()  # type: ignore[attr-defined]
    state["canonical_key"] = entity_key
    state["tier"] = request.tier.value
    return request.model_copy(update={"entity_key": entity_key}), state


def parse_approval_id(value: uuid.UUID | str) -> uuid.UUID:
    return parse_id(value, "approval_id")


def check_reason(reason: str | None, field: str = "reason") -> str | None:
    """A decision note, stripped; bounded and free of NUL (PostgreSQL text cannot hold it)."""
    reason = (reason or "").strip() or None
    if reason is not None:
        if len(reason) > 10_000:
            raise InvalidInput("must be at most 10000 characters", field=field)
        check_no_nul(reason, field)
    return reason


def rejection_reason(reason: str | None) -> str:
    """A rejection needs a reason, so the requester learns why."""
    reason = check_reason(reason)
    if not reason:
        raise InvalidInput("a reason is required to reject a request", field="reason")
    return reason


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than `limit` (checked without recursion, so no depth of input
    can exhaust the stack of what validates it next)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if not isinstance(item, Mapping | list):
            continue
        if depth > limit:
            raise InvalidInput(f"is nested deeper than {limit} levels", field=path or "request")
        children = item.items() if isinstance(item, Mapping) else enumerate(item)
        for key, child in children:
            child_path = (
                f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
            )
            stack.append((child, child_path, depth + 1))


def check_no_nul(value: Any, path: str) -> None:
    """Refuse NUL characters anywhere in a request: PostgreSQL can store them neither in text
    nor in JSONB, so they would fail late, as a database error, instead of as invalid input."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput("must not contain NUL characters", field=path or "request")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_no_nul(key, path or "request")
            check_no_nul(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_no_nul(item, f"{path}[{index}]")


def _check_glossary_key(key: str) -> None:
    """A glossary key names the entry everywhere (Dagster partitions too, where `..` would
    read as a range)."""
    if not re.fullmatch(TERM_PATTERN, key) or len(key) > 200 or ".." in key:
        raise InvalidInput(
            "a glossary key is a term: letters, digits, spaces and . _ ' & / ( ) + - (no '..')",
            field="entity_key",
        )


def _invalid(exc: ValidationError, prefix: str | None = None) -> InvalidInput:
    """Turn pydantic's errors into one message naming each field, e.g.
    `payload.binding.columns[0].name: String should match pattern ...`."""
    messages = [(field_path(e["loc"], prefix or "") or "request", e["msg"]) for e in exc.errors()]
    first_field = messages[0][0]
    detail = "; ".join(f"{field}: {message}" for field, message in messages[:5])
    return InvalidInput(detail.removeprefix(f"{first_field}: "), field=first_field)


def field_binding_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """`deprecated`, `unbound` or `rebound` when `new` (a field's state) takes `old`'s
    binding away or changes it; None otherwise."""
    if new.get("status") == EntityStatus.DEPRECATED.value != old.get("status"):
        return "deprecated"
    if not new.get("binding"):
        return "unbound"
    return "rebound" if new.get("binding") != old.get("binding") else None


# -- listings --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ApprovalListing:
    """A request as an inbox lists it: its fields but the two large ones in `summary`, and its
    payload and current state as their stored JSON text, only when asked for. Parsing a
    thousand 64 KiB payloads only to serialise them again took 16 s and 1.2 GB of server
    memory (bench/list_memory.py); the text now passes through untouched."""

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
        return cls(
            id=uuid.uuid4(),
            tenant_id=requester.tenant_id,
            entity_type=request.entity_type,
            entity_id=live.id if live else uuid.uuid4(),
            entity_key=request.entity_key,
            tier=request.tier,
            lane=request.lane,
            payload=state,
            current_state=live.as_dict() if live else None,
            status=ApprovalStatus.PENDING,
            decision_reason=None,
            requested_by=requester.user,
            decided_by=None,
            requested_at=now,
            decided_at=None,
            required_role=cell_role(cell, overrides),
            required_approvals=required_approvals(cell, approval_counts or {}),
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
            required_role=_cell_role(*now, overrides),
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
        return decided, decided._approval_events(now)

    def reject(
        self, decider: Identity, now: dt.datetime, reason: str | None
    ) -> tuple[Approval, list[NewEvent]]:
        """Turn the request down; the reason is mandatory so the requester learns why."""
        reason = rejection_reason(reason)
        self._check_pending()
        self._check_may_decide(decider)
        decided = self._decided(ApprovalStatus.REJECTED, decider, now, reason)
        return decided, [decided._decision_event("approval.rejected", now)]

    def cancel(
        self, actor: Identity, now: dt.datetime, reason: str | None
    ) -> tuple[Approval, list[NewEvent]]:
        """Withdraw one's own pending request."""
        self._check_pending()
        if self.requested_by != actor.user:
            raise Forbidden(f"only the requester ({self.requested_by}) may cancel this request")
        decided = self._decided(ApprovalStatus.CANCELLED, actor, now, reason)
        return decided, [decided._decision_event("approval.cancelled", now)]

    def check_may_preview(self, viewer: Identity) -> None:
        """Evidence (a profile of the proposed binding) is for those who may decide: the
        required role, or a tenant admin. Anyone else could read a bound column's values by
        submitting bindings with rules and previewing them."""
        if self.required_role not in viewer.roles and POLICY_ADMIN_ROLE not in viewer.roles:
            raise Forbidden(
                f"role {self.required_role} (or {POLICY_ADMIN_ROLE}) is required to preview "
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

    def _approval_events(self, now: dt.datetime) -> list[NewEvent]:
        """The events of an approval, in order (see the README's event table)."""
        events: list[NewEvent] = []
        prefix = ENTITY_EVENT_PREFIX.get(self.entity_type)
        if prefix:
            structural = self.is_structural()
            events.append(
                self._event(
                    f"{prefix}.approved",
                    now,
                    {
                        "approval_id": self.id,
                        "canonical_key": self.entity_key,
                        "tier": self.tier,
                        "version": self.new_version,
                        "state": self.payload,
                    },
                )
            )
            changed = {
                "canonical_key": self.entity_key,
                "change_type": "APPROVAL",
                "changed_fields": self.changed_fields(),
                "structural": structural,
                "previous_version": self.base_version,
                "version": self.new_version,
            }
            lineage = None
            if self.entity_type is EntityType.KPI:
                added, removed = input_changes(
                    self.current_state.get("depends_on") if self.current_state else None,
                    self.payload.get("depends_on") or [],
                )
                changed |= {"added_inputs": added, "removed_inputs": removed}
                if added or removed:
                    lineage = {
                        "canonical_key": self.entity_key,
                        "added_inputs": added,
                        "removed_inputs": removed,
                    }
            events.append(self._event(f"{prefix}.changed", now, changed))
            if lineage is not None:
                events.append(self._event("lineage.changed", now, lineage))
            if (
                self.entity_type is EntityType.GLOBAL_METADATA
                and self.tier in PROFILED_TIERS
                and structural
                and self.payload.get("binding")
                and self.payload.get("status") != EntityStatus.DEPRECATED.value
            ):
                events.append(
                    self._event(
                        "metadata.profile.due",
                        now,
                        {
                            "canonical_key": self.entity_key,
                            "tier": self.tier,
                            "reason": ProfileReason.STRUCTURAL,
                            "priority": PROFILED_TIERS[self.tier],
                            "approval_id": self.id,
                            "version": self.new_version,
                            "binding": self.payload["binding"],
                        },
                    )
                )
        events.append(
            self._decision_event(
                "approval.approved", now, endorsed_by=[e.user for e in self.endorsements]
            )
        )
        return events

    def _decision_event(self, event_type: str, now: dt.datetime, **extra: Any) -> NewEvent:
        return self._event(
            event_type,
            now,
            {
                "approval_id": self.id,
                "entity_type": self.entity_type,
                "entity_key": self.entity_key,
                "tier": self.tier,
                "lane": self.lane,
                "required_role": self.required_role,
                "requested_by": self.requested_by,
                "decided_by": self.decided_by,
                "reason": self.decision_reason,
                **extra,
            },
        )

    def _event(self, event_type: str, now: dt.datetime, payload: dict[str, Any]) -> NewEvent:
        return NewEvent(
            type=event_type,
            tenant_id=self.tenant_id,
            entity_type=self.entity_type,
            entity_key=self.entity_key,
            correlation_id=self.id,
            actor=self.decided_by or self.requested_by,
            occurred_at=now,
            payload=validate_event(event_type, payload),
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
        event = self._event(
            "approval.endorsed",
            now,
            {
                "approval_id": self.id,
                "entity_type": self.entity_type,
                "entity_key": self.entity_key,
                "tier": self.tier,
                "lane": self.lane,
                "required_role": self.required_role,
                "requested_by": self.requested_by,
                "endorsed_by": decider.user,
                "endorsements": len(endorsed.endorsements),
                "required_approvals": self.required_approvals,
                "reason": reason,
            },
        )
        return endorsed, [dataclasses.replace(event, actor=decider.user)]
