"""Two-person rules: a policy cell asking for several approvers; each approval before the last
is an endorsement (the request stays pending), the last applies it, any rejection ends it, and
an approver counts once. The aggregate without a store, then the services on both backends,
then the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import uuid

import pytest

from mdstudio_core.config import Settings
from mdstudio_core.domain.approvals import (
    Approval,
    check_approvals_count,
    effective_approvals,
    required_approvals,
    validate_request,
)
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput
from mdstudio_core.domain.model import ApprovalStatus, Identity, Lane, Tier
from mdstudio_core.service_layer import approvals, change_sets, two_person
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.cli_helpers import run_cli
from tests.support.factories import (
    KERNEL_OWNER,
    SETTINGS,
    STEWARD,
    approve_metadata,
    changed,
    event_types,
    glossary_request,
    kpi_request,
    metadata_request,
    person,
    store_snapshot,
)

TENANT = uuid.uuid4()
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
ALICE = Identity(TENANT, "alice", frozenset({KERNEL_OWNER}))
BOB = Identity(TENANT, "bob", frozenset({KERNEL_OWNER}))
CAROL = Identity(TENANT, "carol", frozenset({KERNEL_OWNER}))
DAN = Identity(TENANT, "dan", frozenset({KERNEL_OWNER}))
TWO_FOR_KERNEL_TIER1 = {("kernel", "tier1"): 2}


def submitted(counts=TWO_FOR_KERNEL_TIER1, raw=None) -> Approval:
    request, state = validate_request(raw or metadata_request())
    return Approval.submit(request, state, ALICE, None, {}, NOW, approval_counts=counts)


# -- the aggregate ---------------------------------------------------------------------------


def test_the_policy_cell_that_decides_a_request_gives_its_approver_count():
    assert submitted().required_approvals == 2
    assert submitted({}).required_approvals == 1
    assert submitted({("kernel", "*"): 3}).required_approvals == 3
    # The tier's own count beats the lane-wide one, as for roles.
    assert submitted({("kernel", "*"): 3, ("kernel", "tier1"): 1}).required_approvals == 1
    tier2 = metadata_request("sales.a.b", tier="tier2")
    assert submitted(TWO_FOR_KERNEL_TIER1, tier2).required_approvals == 1
    # A tier1 change through the draft lane is decided by the kernel's tier1 cell.
    draft = metadata_request(lane="draft")
    assert submitted(TWO_FOR_KERNEL_TIER1, draft).required_approvals == 2
    effective = effective_approvals(TWO_FOR_KERNEL_TIER1)
    assert effective["kernel"] == {"tier1": 2, "tier2": 1, "tier3": 1}
    assert effective["draft"]["tier1"] == 2 and effective["governed"]["tier2"] == 1
    assert required_approvals((Lane.GOVERNED, Tier.TIER2), {("governed", "tier2"): 4}) == 4


@pytest.mark.parametrize("count", [0, -1, 11])
def test_a_policy_asks_for_one_to_ten_approvers(count):
    with pytest.raises(InvalidInput) as refused:
        check_approvals_count(count)
    assert refused.value.field == "approvals"
    assert check_approvals_count(10) == 10


def test_the_first_approval_is_an_endorsement_and_the_last_applies():
    request = submitted()
    endorsed, events = request.approve(BOB, None, NOW, "looks right")
    assert endorsed.status is ApprovalStatus.PENDING and endorsed.decided_by is None
    assert endorsed.endorsers == ["bob"] and endorsed.approvals_missing == 1
    [event] = events
    assert (event.type, event.actor) == ("approval.endorsed", "bob")
    assert event.payload["endorsed_by"] == "bob"
    assert (event.payload["endorsements"], event.payload["required_approvals"]) == (1, 2)
    assert event.payload["reason"] == "looks right"
    decided, events = endorsed.approve(CAROL, None, NOW, None)
    assert decided.status is ApprovalStatus.APPROVED and decided.decided_by == "carol"
    assert [e.type for e in events][-1] == "approval.approved"
    assert events[-1].payload["endorsed_by"] == ["bob"]
    assert events[0].type == "metadata.approved"


def test_an_approver_counts_once_and_the_requester_never():
    endorsed, _ = submitted().approve(BOB, None, NOW, None)
    with pytest.raises(Conflict, match="bob has already endorsed"):
        endorsed.approve(BOB, None, NOW, None)
    with pytest.raises(Forbidden, match="four-eyes"):
        endorsed.approve(ALICE, None, NOW, None)
    steward = Identity(TENANT, "sam", frozenset({STEWARD}))
    with pytest.raises(Forbidden, match="role kernel_owner"):
        endorsed.approve(steward, None, NOW, None)


def test_three_approvers_take_two_endorsements():
    request = submitted({("kernel", "tier1"): 3})
    first, _ = request.approve(BOB, None, NOW, None)
    second, _ = first.approve(CAROL, None, NOW, None)
    assert second.status is ApprovalStatus.PENDING and second.endorsers == ["bob", "carol"]
    decided, events = second.approve(DAN, None, NOW, None)
    assert decided.status is ApprovalStatus.APPROVED
    assert events[-1].payload["endorsed_by"] == ["bob", "carol"]


def test_one_rejection_ends_it_even_after_endorsements():
    endorsed, _ = submitted().approve(BOB, None, NOW, None)
    rejected, [event] = endorsed.reject(CAROL, NOW, "wrong table")
    assert rejected.status is ApprovalStatus.REJECTED and event.type == "approval.rejected"
    with pytest.raises(Conflict, match="already rejected"):
        rejected.approve(DAN, None, NOW, None)


def test_an_endorsement_of_a_stale_request_is_a_conflict():
    from tests.unit.test_approval_aggregate import live_entity

    request = submitted()
    with pytest.raises(Conflict, match="stale"):
        request.approve(BOB, live_entity(dataclasses.replace(request, tenant_id=TENANT)), NOW, None)


# -- services, both backends ----------------------------------------------------------------


def two_for_tier1(engine, tenant) -> None:
    admin = person(tenant, "root", "tenant_admin")
    two_person.set_policy(UnitOfWork(engine), admin, Lane.KERNEL, Tier.TIER1, KERNEL_OWNER, 2)


def approve_as(engine, tenant, approval_id, user):
    return approvals.approve(
        UnitOfWork(engine), person(tenant, user, KERNEL_OWNER), approval_id, None, SETTINGS
    )


def test_endorsements_are_stored_and_the_last_approval_applies(engine, uow, tenant):
    two_for_tier1(engine, tenant)
    pending = approvals.submit(uow, person(tenant, "alice"), metadata_request(), SETTINGS)
    assert pending.required_approvals == 2
    endorsed = approve_as(engine, tenant, pending.id, "bob")
    assert endorsed.status is ApprovalStatus.PENDING
    stored = approvals.get_approval(uow, person(tenant, "x"), pending.id)
    assert stored.status is ApprovalStatus.PENDING
    assert [(e.user, e.reason) for e in stored.endorsements] == [("bob", None)]
    assert event_types(engine, pending.id) == ["approval.endorsed"]
    before = store_snapshot(engine)
    with pytest.raises(Conflict, match="already endorsed"):
        approve_as(engine, tenant, pending.id, "bob")
    assert store_snapshot(engine) == before
    decided = approve_as(engine, tenant, pending.id, "carol")
    assert decided.status is ApprovalStatus.APPROVED and decided.decided_by == "carol"
    assert event_types(engine, pending.id) == [
        "approval.endorsed",
        "metadata.approved",
        "metadata.changed",
        "metadata.profile.due",
        "approval.approved",
    ]
    shown = approvals.show_approval(uow, person(tenant, "x"), pending.id, Settings())
    assert [e.user for e in shown["endorsements"]] == ["bob"]
    # Another tenant, and other cells of this one, need one approver.
    other = approvals.submit(uow, person(uuid.uuid4(), "a"), metadata_request(), SETTINGS)
    governed = approvals.submit(uow, person(tenant, "a"), glossary_request(), SETTINGS)
    assert other.required_approvals == governed.required_approvals == 1


def test_a_rejection_after_an_endorsement_ends_the_request(engine, uow, tenant):
    two_for_tier1(engine, tenant)
    pending = approvals.submit(uow, person(tenant, "alice"), metadata_request(), SETTINGS)
    approve_as(engine, tenant, pending.id, "bob")
    approvals.reject(uow, person(tenant, "carol", KERNEL_OWNER), pending.id, "no")
    with pytest.raises(Conflict, match="already rejected"):
        approve_as(engine, tenant, pending.id, "dan")
    assert event_types(engine, pending.id) == ["approval.endorsed", "approval.rejected"]


def test_pending_requests_keep_the_count_they_were_given(engine, uow, tenant):
    before = approvals.submit(uow, person(tenant, "alice"), metadata_request(), SETTINGS)
    two_for_tier1(engine, tenant)
    assert approve_as(engine, tenant, before.id, "bob").status is ApprovalStatus.APPROVED


def test_a_change_set_is_endorsed_and_applied_as_a_whole(engine, uow, tenant):
    two_for_tier1(engine, tenant)
    submitted_set = change_sets.submit(
        uow,
        person(tenant, "alice"),
        "Two items",
        [metadata_request(), glossary_request()],
        Settings(),
    )
    assert submitted_set.approval.required_approvals == 2  # its strictest item's cell's
    endorsed = approve_as(engine, tenant, submitted_set.approval.id, "bob")
    assert endorsed.status is ApprovalStatus.PENDING
    assert event_types(engine, submitted_set.approval.id) == ["approval.endorsed"]
    with pytest.raises(Conflict, match="already endorsed"):
        approve_as(engine, tenant, submitted_set.approval.id, "bob")
    decided = approve_as(engine, tenant, submitted_set.approval.id, "carol")
    assert decided.status is ApprovalStatus.APPROVED
    assert event_types(engine, submitted_set.approval.id)[-1] == "approval.approved"
    assert event_types(engine, submitted_set.approval.id).count("approval.approved") == 2


def test_the_set_needs_as_many_approvers_as_its_most_demanding_item(uow, tenant):
    admin = person(tenant, "root", "tenant_admin")
    two_person.set_policy(uow, admin, Lane.GOVERNED, Tier.TIER3, STEWARD, 3)
    submitted_set = change_sets.submit(
        uow,
        person(tenant, "alice"),
        "Mixed",
        [metadata_request(), glossary_request()],  # tier1 (kernel_owner) and tier3 (3 people)
        Settings(),
    )
    assert submitted_set.approval.required_role == KERNEL_OWNER
    assert submitted_set.approval.required_approvals == 3


def test_two_endorsers_racing_never_count_as_one_nor_apply_early(engine, tenant):
    admin = person(tenant, "root", "tenant_admin")
    two_person.set_policy(UnitOfWork(engine), admin, Lane.KERNEL, Tier.TIER1, KERNEL_OWNER, 3)
    pending = approvals.submit(
        UnitOfWork(engine), person(tenant, "alice"), metadata_request(), SETTINGS
    )
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def endorse(user: str) -> None:
        barrier.wait()
        outcomes.append(approve_as(engine, tenant, pending.id, user).status.value)

    threads = [threading.Thread(target=endorse, args=(u,)) for u in ("bob", "carol")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == ["pending", "pending"]
    stored = approvals.get_approval(UnitOfWork(engine), person(tenant, "x"), pending.id)
    assert sorted(stored.endorsers) == ["bob", "carol"]
    assert approve_as(engine, tenant, pending.id, "dan").status is ApprovalStatus.APPROVED


def test_only_a_tenant_admin_sets_the_count(uow, tenant):
    with pytest.raises(Forbidden):
        two_person.set_policy(uow, person(tenant, "bob"), Lane.KERNEL, None, KERNEL_OWNER, 2)
    with pytest.raises(InvalidInput):
        two_person.set_policy(uow, person(tenant, "r", "tenant_admin"), Lane.KERNEL, None, "x", 0)


# -- CLI -------------------------------------------------------------------------------------


def test_policy_set_approvals_then_endorse_and_apply_by_cli(cli_env):
    policy = [
        "policy", "set", "--lane", "kernel", "--tier", "tier1",
        "--required-role", "kernel_owner", "--approvals", "2",
    ]  # fmt: skip
    denied = run_cli([*policy, "--user", "bob"])
    assert denied.exit_code == 3
    bad = run_cli([*policy[:-1], "11", "--user", "root", "--role", "tenant_admin"])
    assert bad.exit_code == 2 and "approvals" in bad.stderr
    done = run_cli([*policy, "--user", "root", "--role", "tenant_admin", "--json"])
    assert done.exit_code == 0, done.stderr
    assert done.json["kernel"]["tier1"] == "kernel_owner"
    assert done.json["approvals"]["kernel"] == {"tier1": 2, "tier2": 1, "tier3": 1}
    shown = run_cli(["policy", "show", "--user", "root"])
    assert "kernel_owner x2" in shown.stdout
    # A role change alone keeps the count.
    kept = run_cli([*policy[:-2], "--user", "root", "--role", "tenant_admin", "--json"])
    assert kept.json["approvals"]["kernel"]["tier1"] == 2

    submitted = run_cli(
        ["approvals", "submit", "--file", "-", "--user", "alice", "--json"],
        stdin=json.dumps(metadata_request()),
    )
    request_id = submitted.json["id"]
    assert submitted.json["required_approvals"] == 2
    approve = ["approvals", "approve", request_id, "--role", "kernel_owner"]
    first = run_cli([*approve, "--user", "bob", "--json"])
    assert first.exit_code == 0, first.stderr
    assert first.json["status"] == "pending"
    assert [e["user"] for e in first.json["endorsements"]] == ["bob"]
    twice = run_cli([*approve, "--user", "bob"])
    assert twice.exit_code == 5 and "bob has already endorsed" in twice.stderr
    human = run_cli(["approvals", "show", request_id, "--user", "x"])
    assert "endorsements:" in human.stdout and "bob" in human.stdout
    last = run_cli([*approve, "--user", "carol", "--json"])
    assert (last.exit_code, last.json["status"], last.json["decided_by"]) == (
        0,
        "approved",
        "carol",
    )


def test_a_decision_judged_stricter_takes_the_stricter_cells_approver_count(engine, uow, tenant):
    """A deprecation submitted as a tier2 change (one steward) becomes a tier1 decision once a
    tier1 KPI depends on the field, and tier1 takes two kernel owners: the first is an
    endorsement."""
    for key in ("finance.revenue.gross_amount", "finance.cost.cost_amount"):
        approve_metadata(engine, tenant, key=key, tier="tier2")
    deprecation = approvals.submit(
        uow,
        person(tenant, "alice"),
        changed(metadata_request(tier="tier2"), status="deprecated"),
        SETTINGS,
    )
    assert (deprecation.required_role, deprecation.required_approvals) == (STEWARD, 1)
    kpi = approvals.submit(uow, person(tenant, "alice"), kpi_request(tier="tier1"), SETTINGS)
    approve_as(engine, tenant, kpi.id, "olga")
    two_for_tier1(engine, tenant)
    endorsed = approve_as(engine, tenant, deprecation.id, "bob")
    assert endorsed.status is ApprovalStatus.PENDING
    assert (endorsed.required_role, endorsed.required_approvals) == (KERNEL_OWNER, 2)
    assert approve_as(engine, tenant, deprecation.id, "carol").status is ApprovalStatus.APPROVED
