"""The approval workflow on both backends: every rule, the exact events, and refusals that write
nothing."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from mdstudio_core.domain.model import ApprovalStatus, EntityType, Lane, Tier
from mdstudio_core.service_layer import approvals, catalog
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import (
    KERNEL_OWNER,
    SETTINGS,
    STEWARD,
    business_rule_request,
    changed,
    event_types,
    glossary_request,
    kpi_request,
    metadata_request,
    person,
    store_snapshot,
)


def submit_and_approve(engine, tenant, request, approver_role=None):
    requester = person(tenant, "alice", STEWARD)
    approval = approvals.submit(UnitOfWork(engine), requester, request, SETTINGS)
    approver = person(tenant, "bob", approver_role or approval.required_role)
    return approvals.approve(UnitOfWork(engine), approver, approval.id, None, SETTINGS)


# -- submit --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tier", "lane", "role"),
    [
        ("tier1", "kernel", KERNEL_OWNER),
        ("tier1", "draft", KERNEL_OWNER),
        ("tier2", "governed", STEWARD),
        ("tier3", "governed", STEWARD),
        ("tier2", "kernel", KERNEL_OWNER),
        ("tier3", "draft", STEWARD),
    ],
)
def test_submit_derives_required_role_from_lane(engine, uow, tenant, tier, lane, role):
    approval = approvals.submit(
        uow,
        person(tenant, "alice"),
        metadata_request(tier=tier, lane=lane),
        SETTINGS,
    )
    assert approval.status is ApprovalStatus.PENDING
    assert approval.required_role == role
    assert approval.current_state is None
    stored = approvals.get_approval(uow, person(tenant, "carol"), approval.id)
    assert stored.required_role == role
    assert stored.payload["binding"]["columns"][0] == {
        "name": "gross_amount",
        "nullable": False,
        "unique": False,
        "min": 0,
    }
    assert event_types(engine) == []  # submitting alone emits nothing


def test_tenant_policy_overrides_default_role(uow, tenant):
    admin = person(tenant, "root", "tenant_admin")
    approvals.set_policy(uow, admin, Lane.GOVERNED, Tier.TIER2, "finance_steward")
    tier2 = approvals.submit(uow, person(tenant, "alice"), metadata_request(tier="tier2"), SETTINGS)
    tier3 = approvals.submit(
        uow,
        person(tenant, "alice"),
        metadata_request("finance.x.y", tier="tier3"),
        SETTINGS,
    )
    assert tier2.required_role == "finance_steward"
    assert tier3.required_role == STEWARD
    # Another tenant keeps the defaults.
    other = approvals.submit(
        uow, person(uuid.uuid4(), "alice"), metadata_request(tier="tier2"), SETTINGS
    )
    assert other.required_role == STEWARD
    with pytest.raises(Forbidden):
        approvals.set_policy(uow, person(tenant, "alice", STEWARD), Lane.KERNEL, None, "x")


def test_submit_snapshots_current_state(engine, uow, tenant):
    submit_and_approve(engine, tenant, metadata_request())
    update = approvals.submit(
        uow,
        person(tenant, "alice"),
        changed(metadata_request(), label="Gross revenue"),
        SETTINGS,
    )
    assert update.current_state["version"] == 1
    assert update.current_state["label"] == "Gross amount"
    assert str(update.entity_id) == update.current_state["id"]


# -- the events of an approval, exactly ------------------------------------------------------


def test_tier1_metadata_approval_writes_the_four_events_in_order(engine, uow, tenant):
    approval = submit_and_approve(engine, tenant, metadata_request(tier="tier1"))
    assert approval.status is ApprovalStatus.APPROVED
    assert approval.decided_by == "bob"
    events = catalog.list_events(uow, person(tenant, "x"))
    assert [e.type for e in events] == [
        "metadata.approved",
        "metadata.changed",
        "metadata.profile.due",
        "approval.approved",
    ]
    assert [e.id for e in events] == sorted(e.id for e in events)
    for event in events:
        assert event.correlation_id == approval.id
        assert event.actor == "bob"
        assert event.tenant_id == tenant
        assert event.entity_key == "finance.revenue.gross_amount"
        assert event.entity_type is EntityType.GLOBAL_METADATA
    changed_event, due = events[1], events[2]
    assert changed_event.payload["change_type"] == "APPROVAL"
    assert "binding" in changed_event.payload["changed_fields"]
    assert due.payload["reason"] == "STRUCTURAL"
    assert due.payload["priority"] == "high"
    assert due.payload["binding"]["table"] == "orders"
    entity = catalog.get_entity(uow, person(tenant, "x"), "finance.revenue.gross_amount")
    assert entity.version == 1
    assert entity.updated_by == "bob"


def test_tier2_profile_due_has_normal_priority(engine, uow, tenant):
    submit_and_approve(engine, tenant, metadata_request(tier="tier2"))
    due = [
        e for e in catalog.list_events(uow, person(tenant, "x")) if e.type == "metadata.profile.due"
    ]
    assert len(due) == 1
    assert due[0].payload["priority"] == "normal"


def test_tier3_approval_never_asks_for_a_profile(engine, tenant):
    submit_and_approve(engine, tenant, metadata_request(tier="tier3"))
    assert event_types(engine) == ["metadata.approved", "metadata.changed", "approval.approved"]


def test_no_binding_no_profile_due(engine, tenant):
    submit_and_approve(engine, tenant, metadata_request(binding=None))
    assert "metadata.profile.due" not in event_types(engine)


def test_description_change_is_not_structural(engine, uow, tenant):
    submit_and_approve(engine, tenant, metadata_request())
    second = submit_and_approve(
        engine, tenant, changed(metadata_request(), description="A clearer description")
    )
    assert event_types(engine, second.id) == [
        "metadata.approved",
        "metadata.changed",
        "approval.approved",
    ]
    changed_event = catalog.list_events(uow, person(tenant, "x"))[-2]
    assert changed_event.payload["changed_fields"] == ["description"]
    assert changed_event.payload["structural"] is False
    assert changed_event.payload["previous_version"] == 1
    assert changed_event.payload["version"] == 2


@pytest.mark.parametrize(
    "change",
    [
        {"data_type": "integer"},
        {
            "binding": {
                "source": "warehouse",
                "schema": "sales",
                "table": "orders",
                "columns": [{"name": "gross_amount", "nullable": True}],
            }
        },
        {
            "binding": {
                "source": "warehouse",
                "schema": "sales",
                "table": "orders_v2",
                "columns": [{"name": "gross_amount", "min": 0}],
            }
        },
    ],
    ids=["data_type", "column_rule", "table"],
)
def test_structural_changes_ask_for_a_profile(engine, tenant, change):
    submit_and_approve(engine, tenant, metadata_request())
    second = submit_and_approve(engine, tenant, changed(metadata_request(), **change))
    assert event_types(engine, second.id) == [
        "metadata.approved",
        "metadata.changed",
        "metadata.profile.due",
        "approval.approved",
    ]


def test_kpi_events(engine, uow, tenant):
    approval = submit_and_approve(engine, tenant, kpi_request())
    assert event_types(engine, approval.id) == [
        "kpi.approved",
        "kpi.changed",
        "lineage.changed",  # a new KPI's inputs are all added
        "approval.approved",
    ]
    kpis = catalog.list_entities(uow, person(tenant, "x"), EntityType.KPI)
    assert kpis[0].depends_on == ("finance.revenue.gross_amount", "finance.cost.cost_amount")


def _trust_states(engine, tenant, key):
    with UnitOfWork(engine) as uow:
        return uow.lineage.trust_states(tenant, [key])


def test_only_an_active_kpi_gets_a_trust_when_approved(engine, tenant):
    """A draft or deprecated KPI is no live figure: its approval records no trust."""
    for status in ("draft", "deprecated"):
        kpi = changed(kpi_request(f"finance.kpi.{status}", tier="tier3"), status=status)
        submit_and_approve(engine, tenant, kpi)
        assert _trust_states(engine, tenant, f"finance.kpi.{status}") == {}
    submit_and_approve(engine, tenant, kpi_request("finance.kpi.live", tier="tier3"))
    assert list(_trust_states(engine, tenant, "finance.kpi.live")) == ["finance.kpi.live"]


def test_another_tenants_tier1_kpi_does_not_raise_the_role_for_deprecating_a_field(
    engine, uow, tenant
):
    """Only the tenant's own tier1 KPIs make a field's deprecation a tier1 decision."""
    other = uuid.uuid4()
    for owner in (tenant, other):
        submit_and_approve(engine, owner, metadata_request("finance.x", tier="tier2"))
    kpi = changed(kpi_request("finance.kpi.x", tier="tier1"), depends_on=["finance.x"])
    submit_and_approve(engine, other, kpi)
    deprecated = metadata_request("finance.x", tier="tier2", status="deprecated")
    for owner, role in ((tenant, STEWARD), (other, KERNEL_OWNER)):
        submitted = approvals.submit(uow, person(owner, "alice"), deprecated, SETTINGS)
        assert submitted.required_role == role


def test_a_binding_change_retrusts_its_kpis(engine, uow, tenant):
    """Unbinding an input recomputes its KPI's trust."""
    key, kpi = "finance.revenue.gross_amount", "finance.kpi.gross_margin"
    submit_and_approve(engine, tenant, metadata_request(key, tier="tier2"))
    submit_and_approve(engine, tenant, kpi_request(kpi))
    before = _trust_states(engine, tenant, kpi)[kpi]
    unbound = metadata_request(key, tier="tier2", binding=None)
    approval = approvals.submit(uow, person(tenant, "alice"), unbound, SETTINGS)
    approvals.approve(
        uow,
        person(tenant, "bob", approval.required_role),
        approval.id,
        None,
        SETTINGS,
    )
    assert _trust_states(engine, tenant, kpi)[kpi].computed_at > before.computed_at


@pytest.mark.parametrize("request_builder", [business_rule_request, glossary_request])
def test_rules_and_glossary_write_only_approval_approved(engine, uow, tenant, request_builder):
    approval = submit_and_approve(engine, tenant, request_builder())
    assert event_types(engine, approval.id) == ["approval.approved"]
    entity_type = approval.entity_type
    assert catalog.get_entity(uow, person(tenant, "x"), approval.entity_key, entity_type)


def test_glossary_is_keyed_by_term_unless_named(engine, tenant):
    approval = submit_and_approve(engine, tenant, glossary_request("Gross Revenue"))
    assert approval.entity_key == "Gross Revenue"
    named = {**glossary_request("Net Revenue"), "entity_key": "glossary.net_revenue"}
    assert submit_and_approve(engine, tenant, named).entity_key == "glossary.net_revenue"


def test_reject_and_cancel_write_their_event(engine, uow, tenant):
    alice = person(tenant, "alice", STEWARD)
    first = approvals.submit(uow, alice, metadata_request(tier="tier2"), SETTINGS)
    rejected = approvals.reject(uow, person(tenant, "bob", STEWARD), first.id, "wrong table")
    assert rejected.status is ApprovalStatus.REJECTED
    assert rejected.decision_reason == "wrong table"
    second = approvals.submit(uow, alice, metadata_request(tier="tier2"), SETTINGS)
    cancelled = approvals.cancel(uow, alice, second.id)
    assert cancelled.status is ApprovalStatus.CANCELLED
    assert event_types(engine) == ["approval.rejected", "approval.cancelled"]
    events = catalog.list_events(uow, person(tenant, "x"))
    assert events[0].payload["reason"] == "wrong table"
    assert events[1].actor == "alice"
    # Neither touched the catalog.
    assert catalog.list_entities(uow, person(tenant, "x")) == []


# -- refusals: a clear error, and nothing written --------------------------------------------


def _refused(engine, error, call, *, mentions):
    before = store_snapshot(engine)
    with pytest.raises(error) as excinfo:
        call()
    assert mentions in str(excinfo.value)
    assert store_snapshot(engine) == before
    return excinfo.value


def _approval_refused(engine, uow, approver, approval, error, *, mentions):
    """`approver` approving `approval` fails with `error` and writes nothing."""
    return _refused(
        engine,
        error,
        lambda: approvals.approve(uow, approver, approval.id, None, SETTINGS),
        mentions=mentions,
    )


@pytest.mark.parametrize(
    ("mutate", "mentions"),
    [
        (lambda r: r.update(entity_type="DATASET"), "entity_type"),
        (lambda r: r.update(tier="tier9"), "tier"),
        (lambda r: r.update(lane="express"), "lane"),
        (lambda r: r.update(lane="governed"), "lane"),  # tier1 belongs to the kernel
        (lambda r: r["payload"].pop("label"), "payload.label"),
        (lambda r: r["payload"].pop("data_type"), "payload.data_type"),
        (lambda r: r.update(entity_key="finance.other"), "entity_key"),
        (lambda r: r["payload"].update(tier="tier2"), "payload.tier"),
        (
            lambda r: r["payload"].update(canonical_key="finance; DROP TABLE x"),
            "payload.canonical_key",
        ),
        (lambda r: r["payload"].update(canonical_key="a b"), "payload.canonical_key"),
        (lambda r: r["payload"]["binding"].update(table='orders"; drop'), "payload.binding.table"),
        (lambda r: r["payload"]["binding"].update(schema="sales.x"), "payload.binding.schema"),
        (
            lambda r: r["payload"]["binding"]["columns"][0].update(name="a--b"),
            "payload.binding.columns[0].name",
        ),
        (
            lambda r: r["payload"]["binding"]["columns"][0].update(pattern="(unclosed"),
            "payload.binding.columns[0].pattern",
        ),
        (
            lambda r: r["payload"]["binding"]["columns"][0].update(nulable=True),
            "payload.binding.columns[0].nulable",
        ),
        (
            lambda r: r["payload"]["binding"]["columns"][0].update(min=10, max=1),
            "payload.binding.columns[0]",
        ),
        (lambda r: r["payload"]["binding"].update(columns=[]), "payload.binding.columns"),
        (lambda r: r.update(payload="not an object"), "payload"),
    ],
)
def test_invalid_requests_name_the_field_and_write_nothing(engine, uow, tenant, mutate, mentions):
    request = metadata_request()
    mutate(request)
    error = _refused(
        engine,
        InvalidInput,
        lambda: approvals.submit(uow, person(tenant, "alice"), request, SETTINGS),
        mentions=mentions,
    )
    assert error.field.startswith(mentions.split("[")[0])


def test_self_approval_is_refused(engine, uow, tenant):
    alice = person(tenant, "alice", KERNEL_OWNER)
    approval = approvals.submit(uow, alice, metadata_request(), SETTINGS)
    _approval_refused(engine, uow, alice, approval, Forbidden, mentions="four-eyes")


def test_role_that_may_not_approve_is_refused(engine, uow, tenant):
    approval = approvals.submit(uow, person(tenant, "alice"), metadata_request(), SETTINGS)
    steward = person(tenant, "bob", STEWARD)
    _approval_refused(engine, uow, steward, approval, Forbidden, mentions="kernel_owner")
    _refused(
        engine,
        Forbidden,
        lambda: approvals.reject(uow, person(tenant, "bob"), approval.id, "no"),
        mentions="kernel_owner",
    )


def test_another_tenants_request_is_not_found(engine, uow, tenant):
    approval = approvals.submit(uow, person(tenant, "alice"), metadata_request(), SETTINGS)
    stranger = person(uuid.uuid4(), "mallory", KERNEL_OWNER, STEWARD)
    for call in (
        lambda: approvals.approve(uow, stranger, approval.id, None, SETTINGS),
        lambda: approvals.reject(uow, stranger, approval.id, "no"),
        lambda: approvals.cancel(uow, person(stranger.tenant_id, "alice"), approval.id),
        lambda: approvals.get_approval(uow, stranger, approval.id),
    ):
        _refused(engine, NotFound, call, mentions=str(approval.id))


def test_approving_twice_is_a_conflict(engine, uow, tenant):
    approval = submit_and_approve(engine, tenant, metadata_request())
    carol = person(tenant, "carol", KERNEL_OWNER)
    _approval_refused(engine, uow, carol, approval, Conflict, mentions="already approved")


@pytest.mark.parametrize("live", [True, False], ids=["changing a live entity", "creating one"])
def test_of_two_requests_for_one_entity_the_second_approved_is_stale(engine, uow, tenant, live):
    if live:
        submit_and_approve(engine, tenant, metadata_request())
    alice, bob = person(tenant, "alice"), person(tenant, "bob", KERNEL_OWNER)
    first = approvals.submit(uow, alice, changed(metadata_request(), label="First"), SETTINGS)
    second = approvals.submit(uow, alice, changed(metadata_request(), label="Second"), SETTINGS)
    approvals.approve(uow, bob, first.id, None, SETTINGS)
    _approval_refused(engine, uow, bob, second, Conflict, mentions="stale")
    assert catalog.get_entity(uow, alice, "finance.revenue.gross_amount").state["label"] == "First"


def test_reject_needs_a_reason_and_cancel_is_the_requesters(engine, uow, tenant):
    approval = approvals.submit(uow, person(tenant, "alice"), metadata_request(), SETTINGS)
    _refused(
        engine,
        InvalidInput,
        lambda: approvals.reject(uow, person(tenant, "bob", KERNEL_OWNER), approval.id, "  "),
        mentions="reason",
    )
    _refused(
        engine,
        Forbidden,
        lambda: approvals.cancel(uow, person(tenant, "bob", KERNEL_OWNER), approval.id),
        mentions="requester",
    )


def test_failure_while_writing_events_rolls_back_the_whole_approval(
    engine, uow, tenant, monkeypatch
):
    """All or nothing: if appending the events fails, the entity and status stay untouched."""
    approval = approvals.submit(uow, person(tenant, "alice"), metadata_request(), SETTINGS)

    def broken_append(self, new_events):
        raise RuntimeError("disk full")

    from mdstudio_core.adapters.repositories import EventOutbox

    monkeypatch.setattr(EventOutbox, "append", broken_append)
    before = store_snapshot(engine)
    with pytest.raises(RuntimeError):
        approvals.approve(uow, person(tenant, "bob", KERNEL_OWNER), approval.id, None, SETTINGS)
    assert store_snapshot(engine) == before
    monkeypatch.undo()
    approvals.approve(uow, person(tenant, "bob", KERNEL_OWNER), approval.id, None, SETTINGS)
    assert len(event_types(engine)) == 4


def test_inbox_filters_and_orders_newest_first(uow, tenant):
    alice = person(tenant, "alice")
    ids = [
        approvals.submit(uow, alice, metadata_request(f"finance.k{i}", tier="tier2"), SETTINGS).id
        for i in range(3)
    ]
    approvals.submit(uow, alice, kpi_request(), SETTINGS)
    inbox = approvals.list_approvals(
        uow,
        alice,
        ApprovalFilter(entity_type=EntityType.GLOBAL_METADATA, status=ApprovalStatus.PENDING),
    )
    assert [a.id for a in inbox] == ids[::-1]
    page = approvals.list_approvals(uow, alice, ApprovalFilter(limit=2, offset=1))
    assert len(page) == 2
    stranger = approvals.list_approvals(uow, person(uuid.uuid4(), "x"), ApprovalFilter())
    assert stranger == []
    with pytest.raises(InvalidInput, match="limit"):
        approvals.list_approvals(uow, alice, ApprovalFilter(limit=0))


def test_mine_lists_only_the_callers_own_requests(uow, tenant):
    """The console's "my requests": another user's pending request is not the caller's."""
    own = approvals.submit(uow, person(tenant, "alice"), metadata_request("a.k"), SETTINGS)
    approvals.submit(uow, person(tenant, "bob"), metadata_request("b.k"), SETTINGS)
    alice = person(tenant, "alice")
    mine = approvals.list_approvals(uow, alice, ApprovalFilter().made_by(alice))
    assert [a.id for a in mine] == [own.id]


def test_events_page_by_cursor(engine, uow, tenant):
    for i in range(3):
        submit_and_approve(engine, tenant, metadata_request(f"finance.k{i}", tier="tier3"))
    reader = person(tenant, "x")
    everything = catalog.list_events(uow, reader)
    assert len(everything) == 9
    first = catalog.list_events(uow, reader, limit=4)
    rest = catalog.list_events(uow, reader, after=first[-1].id)
    assert first + rest == everything
    with engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(tables.events)).scalar_one()
            == 9
        )


# -- who decides follows what the change touches ---------------------------------------------


def _live_tier1(engine, tenant):
    """An active, bound tier1 field, approved by a kernel owner."""
    return submit_and_approve(engine, tenant, metadata_request())


def test_draft_lane_cannot_rewrite_a_live_tier1_field(engine, uow, tenant):
    _live_tier1(engine, tenant)
    steward = person(tenant, "alice", STEWARD)
    rebound = {"source": "warehouse", "table": "orders_v2", "columns": [{"name": "gross_amount"}]}
    for status in ("active", "draft"):  # making it live, or turning it back into a draft
        request = metadata_request(lane="draft", binding=rebound, status=status)
        error = _refused(
            engine,
            InvalidInput,
            lambda request=request: approvals.submit(uow, steward, request, SETTINGS),
            mentions="draft",
        )
        assert error.field == "lane"


def test_draft_lane_requests_must_stay_drafts(engine, uow, tenant):
    request = metadata_request("finance.new.field", tier="tier2", lane="draft", status="active")
    error = _refused(
        engine,
        InvalidInput,
        lambda: approvals.submit(uow, person(tenant, "alice"), request, SETTINGS),
        mentions="draft",
    )
    assert error.field == "lane"


def test_a_draft_becomes_active_through_the_lane_of_its_tier(engine, uow, tenant):
    draft = metadata_request("finance.new.field", tier="tier2", lane="draft")
    made = submit_and_approve(engine, tenant, draft)
    assert made.required_role == STEWARD
    live = catalog.get_entity(uow, person(tenant, "x"), "finance.new.field")
    assert live.status.value == "draft"
    activation = metadata_request("finance.new.field", tier="tier2")  # governed lane, active
    activated = submit_and_approve(engine, tenant, activation)
    assert activated.status is ApprovalStatus.APPROVED
    # tier1 drafts are the kernel owner's, even on the draft lane.
    tier1_draft = approvals.submit(
        uow, person(tenant, "alice"), metadata_request("k.d", lane="draft"), SETTINGS
    )
    assert tier1_draft.required_role == KERNEL_OWNER


def test_demoting_a_tier1_field_needs_the_kernel_owner(engine, uow, tenant):
    _live_tier1(engine, tenant)
    demotion = metadata_request(tier="tier2")  # the same key, on the stewards' governed lane
    pending = approvals.submit(uow, person(tenant, "alice", STEWARD), demotion, SETTINGS)
    assert pending.required_role == KERNEL_OWNER
    carol = person(tenant, "carol", STEWARD)
    _approval_refused(
        engine, uow, carol, pending, Forbidden, mentions="role kernel_owner is required"
    )
    approved = approvals.approve(
        uow, person(tenant, "bob", KERNEL_OWNER), pending.id, None, SETTINGS
    )
    assert approved.status is ApprovalStatus.APPROVED


def test_policy_overrides_never_open_tier1_to_another_role(engine, uow, tenant):
    admin = person(tenant, "root", "tenant_admin")
    for lane in (Lane.GOVERNED, Lane.DRAFT):
        approvals.set_policy(uow, admin, lane, None, "intern")
    approvals.set_policy(uow, admin, Lane.DRAFT, Tier.TIER1, "intern")
    _live_tier1(engine, tenant)
    demotion = approvals.submit(
        uow, person(tenant, "alice"), metadata_request(tier="tier2"), SETTINGS
    )
    draft = approvals.submit(
        uow, person(tenant, "alice"), metadata_request("k.d", lane="draft"), SETTINGS
    )
    assert demotion.required_role == draft.required_role == KERNEL_OWNER
    shown = approvals.policy(uow, admin)
    assert shown["draft"]["tier1"] == KERNEL_OWNER and shown["draft"]["tier2"] == "intern"
    # The role the policy gives tier1 is the one tier1 changes need.
    approvals.set_policy(uow, admin, Lane.KERNEL, Tier.TIER1, "chief_owner")
    again = approvals.submit(
        uow, person(tenant, "alice"), metadata_request("k.e", lane="draft"), SETTINGS
    )
    assert again.required_role == "chief_owner"


def test_a_tier_specific_override_beats_the_lane_wide_one_whichever_came_first(uow, tenant):
    admin = person(tenant, "root", "tenant_admin")
    approvals.set_policy(uow, admin, Lane.GOVERNED, Tier.TIER2, "t2_steward")
    approvals.set_policy(uow, admin, Lane.GOVERNED, None, "any_steward")
    alice = person(tenant, "alice")
    tier2 = approvals.submit(uow, alice, metadata_request("k.a", tier="tier2"), SETTINGS)
    tier3 = approvals.submit(uow, alice, metadata_request("k.b", tier="tier3"), SETTINGS)
    assert (tier2.required_role, tier3.required_role) == ("t2_steward", "any_steward")
    shown = approvals.policy(uow, alice)["governed"]
    assert (shown["tier2"], shown["tier3"]) == ("t2_steward", "any_steward")
