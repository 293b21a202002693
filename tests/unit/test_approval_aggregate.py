"""The approval aggregate with no database: transitions, four-eyes, role, staleness, and the
events each decision produces."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from mdstudio_core.domain.approvals import (
    Approval,
    check_may_preview_entity,
    effective_policy,
    field_binding_change,
    validate_request,
)
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput
from mdstudio_core.domain.model import (
    ApprovalStatus,
    EntityStatus,
    EntityType,
    Identity,
    LiveEntity,
    Tier,
)
from tests.support.factories import KERNEL_OWNER, STEWARD, changed, kpi_request, metadata_request

TENANT = uuid.uuid4()
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
ALICE = Identity(TENANT, "alice", frozenset({STEWARD}))
BOB_KERNEL = Identity(TENANT, "bob", frozenset({KERNEL_OWNER}))
CAROL_STEWARD = Identity(TENANT, "carol", frozenset({STEWARD}))


def submitted(raw=None, live: LiveEntity | None = None, overrides=None) -> Approval:
    request, state = validate_request(raw or metadata_request())
    return Approval.submit(request, state, ALICE, live, overrides or {}, NOW)


def live_entity(approval: Approval, version: int = 1) -> LiveEntity:
    """The entity an approval would have written, at `version`."""
    return LiveEntity(
        entity_type=approval.entity_type,
        id=approval.entity_id or uuid.uuid4(),
        tenant_id=TENANT,
        canonical_key=approval.entity_key,
        tier=approval.tier,
        status=EntityStatus(approval.payload["status"]),
        version=version,
        updated_at=NOW,
        updated_by="bob",
        state=approval.payload,
    )


def test_submit_is_pending_with_the_lanes_role():
    approval = submitted()
    assert approval.status is ApprovalStatus.PENDING
    assert approval.required_role == KERNEL_OWNER
    assert approval.current_state is None and approval.base_version is None
    governed = submitted(metadata_request(tier="tier2"))
    assert governed.required_role == STEWARD


def test_tier_specific_override_beats_the_lane_wide_one():
    overrides = {("governed", "*"): "any_steward", ("governed", "tier2"): "finance_steward"}
    assert submitted(metadata_request(tier="tier2"), overrides=overrides).required_role == (
        "finance_steward"
    )
    tier3 = metadata_request("finance.x.y", tier="tier3")
    assert submitted(tier3, overrides=overrides).required_role == "any_steward"
    assert effective_policy(overrides)["governed"] == {
        "tier1": KERNEL_OWNER,  # tier1 keeps the role the policy gives tier1
        "tier2": "finance_steward",
        "tier3": "any_steward",
    }


def test_approve_a_new_entity_produces_the_four_events_in_order():
    approval = submitted()
    decided, events = approval.approve(BOB_KERNEL, None, NOW, "ok")
    assert decided.status is ApprovalStatus.APPROVED
    assert (decided.decided_by, decided.decided_at, decided.decision_reason) == ("bob", NOW, "ok")
    assert approval.status is ApprovalStatus.PENDING  # the aggregate is a value: a new one
    assert [e.type for e in events] == [
        "metadata.approved",
        "metadata.changed",
        "metadata.profile.due",
        "approval.approved",
    ]
    assert {e.correlation_id for e in events} == {approval.id}
    assert events[1].payload["structural"] is True
    assert events[1].payload["previous_version"] is None and events[1].payload["version"] == 1
    assert events[2].payload["priority"] == "high" and events[2].payload["reason"] == "STRUCTURAL"


def test_editorial_change_asks_for_no_profile():
    first = submitted()
    live = live_entity(first)
    update = submitted(changed(metadata_request(), label="Gross revenue"), live=live)
    assert update.base_version == 1
    _, events = update.approve(BOB_KERNEL, live, NOW, None)
    assert [e.type for e in events] == [
        "metadata.approved",
        "metadata.changed",
        "approval.approved",
    ]
    assert events[1].payload["changed_fields"] == ["label"]
    assert events[1].payload["structural"] is False
    assert events[1].payload["version"] == 2


def test_deprecated_field_asks_for_no_profile():
    first = submitted()
    live = live_entity(first)
    binding = {**metadata_request()["payload"]["binding"], "table": "orders_v2"}
    deprecation = submitted(metadata_request(binding=binding, status="deprecated"), live=live)
    _, events = deprecation.approve(BOB_KERNEL, live, NOW, None)
    assert "metadata.profile.due" not in [e.type for e in events]


def test_kpi_events_and_tier2_priority():
    _, events = submitted(kpi_request()).approve(CAROL_STEWARD, None, NOW, None)
    assert [e.type for e in events] == [
        "kpi.approved",
        "kpi.changed",
        "lineage.changed",
        "approval.approved",
    ]
    inputs = ["finance.cost.cost_amount", "finance.revenue.gross_amount"]
    assert events[1].payload["added_inputs"] == inputs
    assert events[1].payload["removed_inputs"] == []
    assert events[2].payload == {
        "canonical_key": "finance.kpi.gross_margin",
        "added_inputs": inputs,
        "removed_inputs": [],
    }
    tier2 = submitted(metadata_request(tier="tier2"))
    _, events = tier2.approve(CAROL_STEWARD, None, NOW, None)
    assert events[2].payload["priority"] == "normal"


def test_a_kpi_update_reports_only_the_inputs_it_adds_and_removes():
    """The lineage events compare the new inputs with the live KPI's, not with nothing."""
    live = live_entity(submitted(kpi_request()))
    inputs = ["finance.revenue.gross_amount", "finance.revenue.net_amount"]
    update = submitted(changed(kpi_request(), depends_on=inputs), live=live)
    _, events = update.approve(CAROL_STEWARD, live, NOW, None)
    added, removed = ["finance.revenue.net_amount"], ["finance.cost.cost_amount"]
    assert [e.type for e in events][1:3] == ["kpi.changed", "lineage.changed"]
    assert (events[1].payload["added_inputs"], events[1].payload["removed_inputs"]) == (
        added,
        removed,
    )
    assert events[2].payload == {
        "canonical_key": "finance.kpi.gross_margin",
        "added_inputs": added,
        "removed_inputs": removed,
    }


@pytest.mark.parametrize(
    ("decider", "refusal"),
    [
        # The requester herself, though she holds the role: four-eyes comes before the role.
        (Identity(TENANT, "alice", frozenset({KERNEL_OWNER})), "four-eyes"),
        (CAROL_STEWARD, "role kernel_owner is required"),
    ],
    ids=["four-eyes before role", "role required"],
)
def test_who_may_not_decide_can_neither_approve_nor_reject(decider, refusal):
    approval = submitted()
    with pytest.raises(Forbidden, match=refusal):
        approval.approve(decider, None, NOW, None)
    with pytest.raises(Forbidden, match=refusal):
        approval.reject(decider, NOW, "no")


def test_stale_when_the_live_entity_moved_on():
    first = submitted()
    live = live_entity(first)
    update = submitted(changed(metadata_request(), label="Second"), live=live)
    with pytest.raises(Conflict, match="stale"):
        update.approve(BOB_KERNEL, live_entity(first, version=2), NOW, None)
    with pytest.raises(Conflict, match="stale"):  # deleted meanwhile
        update.approve(BOB_KERNEL, None, NOW, None)
    new = submitted()
    with pytest.raises(Conflict, match="stale"):  # created by someone else meanwhile
        new.approve(BOB_KERNEL, live, NOW, None)


def test_a_decided_request_cannot_be_decided_again():
    approved, _ = submitted().approve(BOB_KERNEL, None, NOW, None)
    with pytest.raises(Conflict, match="already approved by bob"):
        approved.approve(Identity(TENANT, "dave", frozenset({KERNEL_OWNER})), None, NOW, None)
    with pytest.raises(Conflict, match="already approved"):
        approved.cancel(ALICE, NOW, None)
    rejected, events = submitted().reject(BOB_KERNEL, NOW, "wrong table")
    assert rejected.status is ApprovalStatus.REJECTED
    assert [e.type for e in events] == ["approval.rejected"]
    assert events[0].payload["reason"] == "wrong table"
    with pytest.raises(Conflict, match="already rejected"):
        rejected.approve(BOB_KERNEL, None, NOW, None)


def test_reject_needs_a_reason():
    with pytest.raises(InvalidInput) as caught:
        submitted().reject(BOB_KERNEL, NOW, "   ")
    assert caught.value.field == "reason"


def test_only_the_requester_cancels():
    approval = submitted()
    with pytest.raises(Forbidden, match="only the requester"):
        approval.cancel(BOB_KERNEL, NOW, None)
    cancelled, events = approval.cancel(ALICE, NOW, "changed my mind")
    assert cancelled.status is ApprovalStatus.CANCELLED
    assert [e.type for e in events] == ["approval.cancelled"]
    assert events[0].actor == "alice"


def test_changed_fields_compare_governed_state_only():
    first = submitted()
    live = live_entity(first)
    update = submitted(changed(metadata_request(), description="new words"), live=live)
    assert update.changed_fields() == ["description"]
    assert not update.is_structural()
    assert dataclasses.replace(update, current_state=None).is_structural()


def test_validate_request_names_the_field():
    raw = metadata_request()
    raw["payload"]["binding"]["columns"][0]["name"] = "a--b"
    with pytest.raises(InvalidInput) as caught:
        validate_request(raw)
    assert caught.value.field == "payload.binding.columns[0].name"
    request, state = validate_request(metadata_request())
    assert request.entity_type is EntityType.GLOBAL_METADATA
    assert state["tier"] == Tier.TIER1.value


@pytest.mark.parametrize(
    ("lane", "tier", "live_tier", "role"),
    [
        ("kernel", "tier1", None, KERNEL_OWNER),
        ("draft", "tier1", None, KERNEL_OWNER),
        ("governed", "tier2", None, STEWARD),
        ("kernel", "tier2", None, KERNEL_OWNER),
        ("governed", "tier2", "tier1", KERNEL_OWNER),  # a demotion
        ("draft", "tier3", "tier1", KERNEL_OWNER),
        ("governed", "tier3", "tier2", STEWARD),
        ("draft", "tier3", None, STEWARD),
    ],
)
def test_required_role_is_the_strictest_of_lane_tier_and_live_tier(lane, tier, live_tier, role):
    from mdstudio_core.domain.approvals import required_role
    from mdstudio_core.domain.model import Lane

    live = Tier(live_tier) if live_tier else None
    assert required_role(Lane(lane), Tier(tier), {}, live) == role


def test_draft_lane_keeps_drafts_only():
    with pytest.raises(InvalidInput) as caught:
        submitted(metadata_request("k.x", tier="tier2", lane="draft", status="active"))
    assert str(caught.value) == (
        "lane: the draft lane only keeps drafts: set payload.status to draft, or submit "
        "through the governed lane to make it live"
    )
    first = submitted(metadata_request("k.y", tier="tier2"))
    active = live_entity(first)
    with pytest.raises(InvalidInput) as caught:
        submitted(metadata_request("k.y", tier="tier2", lane="draft"), live=active)
    assert caught.value.field == "lane"
    draft = submitted(metadata_request("k.z", tier="tier2", lane="draft"))
    assert draft.required_role == STEWARD


ORDERS = {"source": "wh", "table": "orders", "columns": [{"name": "amount"}]}
REFUNDS = {"source": "wh", "table": "refunds", "columns": [{"name": "amount"}]}


@pytest.mark.parametrize(
    ("old_status", "new_status", "new_binding", "change"),
    [
        ("active", "deprecated", ORDERS, "deprecated"),
        ("deprecated", "deprecated", ORDERS, None),
        ("active", "active", None, "unbound"),
        ("active", "active", REFUNDS, "rebound"),
        ("active", "active", ORDERS, None),
    ],
)
def test_a_fields_binding_change_is_named_only_when_there_is_one(
    old_status, new_status, new_binding, change
):
    """What the KPIs reading a field bound to orders are told: it is deprecated (once), loses
    its binding or is bound elsewhere; None when it stays deprecated or keeps its binding."""
    old = {"status": old_status, "binding": ORDERS}
    new = {"status": new_status, "binding": new_binding}
    assert field_binding_change(old, new) == change


def test_a_field_with_no_live_binding_has_no_binding_change():
    """Binding a new field, or one that was unbound, moves no KPI's inputs: None, not rebound."""
    assert submitted().binding_change() is None
    unbound = live_entity(submitted(metadata_request(binding=None)))
    assert submitted(metadata_request(), live=unbound).binding_change() is None
    bound = live_entity(submitted())
    assert submitted(metadata_request(binding=None), live=bound).binding_change() == "unbound"


# -- the role judged again when the decision is made ----------------------------------------

ADMIN = Identity(TENANT, "root", frozenset({"tenant_admin"}))


def deprecation_of_a_tier2_field(breaks_tier1_kpi: bool = False) -> tuple[Approval, LiveEntity]:
    field = live_entity(submitted(metadata_request(tier="tier2")))
    request, state = validate_request(changed(metadata_request(tier="tier2"), status="deprecated"))
    return Approval.submit(request, state, ALICE, field, {}, NOW, breaks_tier1_kpi), field


def test_a_tier1_kpi_on_the_field_since_submission_makes_its_deprecation_the_kernel_owners():
    deprecation, field = deprecation_of_a_tier2_field()
    assert deprecation.required_role == STEWARD
    judged = deprecation.judged_again(field, {}, breaks_tier1_kpi=True)
    assert judged.required_role == KERNEL_OWNER
    for decide in (
        lambda: judged.approve(CAROL_STEWARD, field, NOW, None),
        lambda: judged.reject(CAROL_STEWARD, NOW, "no"),
    ):
        with pytest.raises(Forbidden, match="role kernel_owner is required"):
            decide()
    _, events = judged.approve(BOB_KERNEL, field, NOW, None)
    assert events[-1].payload["required_role"] == KERNEL_OWNER
    # The role of the now stricter cell is the policy's as it stands.
    chief = deprecation.judged_again(field, {("kernel", "tier1"): "chief_owner"}, True)
    assert chief.required_role == "chief_owner"


def test_the_role_given_at_submission_stays_unless_the_live_state_calls_for_a_stricter_one():
    deprecation, field = deprecation_of_a_tier2_field()
    assert deprecation.judged_again(field, {}, breaks_tier1_kpi=False) == deprecation
    # A policy change alone moves no pending request.
    finance = {("governed", "tier2"): "finance_steward"}
    assert deprecation.judged_again(field, finance, breaks_tier1_kpi=False) == deprecation
    # Given the tier1 role at submission: the tier1 KPI being gone since lowers nothing.
    breaking, field = deprecation_of_a_tier2_field(breaks_tier1_kpi=True)
    assert breaking.required_role == KERNEL_OWNER
    assert breaking.judged_again(field, {}, breaks_tier1_kpi=False).required_role == KERNEL_OWNER
    # A new entity stays new: nothing is touched but its own tier.
    new = submitted(metadata_request(tier="tier2"))
    assert new.judged_again(None, {}, breaks_tier1_kpi=False) == new


def test_a_field_promoted_to_tier1_since_submission_is_decided_as_tier1():
    deprecation, field = deprecation_of_a_tier2_field()
    promoted = dataclasses.replace(field, tier=Tier.TIER1, version=2)
    judged = deprecation.judged_again(promoted, {}, breaks_tier1_kpi=False)
    assert judged.required_role == KERNEL_OWNER
    with pytest.raises(Forbidden, match="role kernel_owner is required"):
        judged.reject(CAROL_STEWARD, NOW, "no")


# -- evidence: only for those who may decide ---------------------------------------------------


def test_a_requests_evidence_is_for_its_required_role_and_tenant_admins():
    tier1 = submitted()
    tier1.check_may_preview(BOB_KERNEL)
    tier1.check_may_preview(ADMIN)
    tier1.check_may_preview(Identity(TENANT, "alice", frozenset({KERNEL_OWNER})))  # own, too
    for viewer in (
        CAROL_STEWARD,
        Identity(TENANT, "rita", frozenset({"reader"})),
        Identity(TENANT, "nobody"),
    ):
        with pytest.raises(Forbidden, match=r"role kernel_owner \(or tenant_admin\) is required"):
            tier1.check_may_preview(viewer)


def test_a_live_entitys_evidence_is_for_the_workflow_roles():
    for role in (STEWARD, KERNEL_OWNER, "tenant_admin"):
        check_may_preview_entity(Identity(TENANT, "x", frozenset({"reader", role})))
    for roles in ({"reader"}, set()):
        with pytest.raises(Forbidden) as refused:
            check_may_preview_entity(Identity(TENANT, "rita", frozenset(roles)))
        assert "kernel_owner, metadata_steward, tenant_admin" in str(refused.value)
