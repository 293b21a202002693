"""Change sets on both backends: many requests submitted all or nothing, one inbox row, one
decision by the strictest item's role that applies every item (their events in item order) or
none, a stale item naming itself, races that never apply half a set."""

from __future__ import annotations

import threading
import uuid

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.change_sets import InvalidItems, ItemError
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from mdstudio_core.domain.model import ApprovalStatus, EntityType, Lane, Tier
from mdstudio_core.service_layer import approvals, catalog, change_sets
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import (
    KERNEL_OWNER,
    STEWARD,
    approve_metadata,
    business_rule_request,
    changed,
    event_types,
    glossary_request,
    kpi_request,
    metadata_request,
    person,
    store_snapshot,
)

SETTINGS = Settings()


def submit_set(engine, tenant, requests, title="Q3 finance import", user="alice"):
    return change_sets.submit(UnitOfWork(engine), person(tenant, user), title, requests, SETTINGS)


def decide(engine, tenant, approval_id, user="bob", *roles, command=approvals.approve, reason=None):
    who = person(tenant, user, *(roles or (KERNEL_OWNER,)))
    if command is approvals.approve:
        return command(UnitOfWork(engine), who, approval_id, reason, SETTINGS)
    return command(UnitOfWork(engine), who, approval_id, reason)


def mixed_requests():
    return [
        glossary_request("Gross Revenue"),
        metadata_request("sales.orders.region", tier="tier2"),
        metadata_request(),  # tier1: the strictest item
        kpi_request("finance.kpi.margin", tier="tier2"),
    ]


def events_of(engine, correlation_id):
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(tables.events.c.type, tables.events.c.entity_key, tables.events.c.payload)
            .where(tables.events.c.correlation_id == correlation_id)
            .order_by(tables.events.c.id)
        )
        return [tuple(row) for row in rows]


# -- submit ----------------------------------------------------------------------------------


def test_a_set_is_one_pending_request_decided_by_its_strictest_item(engine, uow, tenant):
    submitted = submit_set(engine, tenant, mixed_requests())
    approval = submitted.approval
    assert approval.entity_type is EntityType.CHANGE_SET
    assert approval.entity_key == "Q3 finance import"
    assert (approval.tier, approval.lane, approval.required_role) == (
        Tier.TIER1,
        Lane.KERNEL,
        KERNEL_OWNER,
    )
    assert approval.payload == {"title": "Q3 finance import", "items": 4}
    assert [item.required_role for item in submitted.items] == [
        STEWARD,
        STEWARD,
        KERNEL_OWNER,
        STEWARD,
    ]
    inbox = approvals.list_approvals(
        uow,
        person(tenant, "bob", KERNEL_OWNER),
        ApprovalFilter(status=ApprovalStatus.PENDING),
    )
    assert [row.id for row in inbox] == [approval.id]  # one row, not four
    assert event_types(engine) == []  # submitting writes no event
    assert catalog.list_entities(uow, person(tenant, "bob")) == []
    shown = change_sets.show(uow, person(tenant, "bob"), approval.id, SETTINGS)
    assert [item["entity_key"] for item in shown["items"]] == [
        "Gross Revenue",
        "sales.orders.region",
        "finance.revenue.gross_amount",
        "finance.kpi.margin",
    ]
    assert [item["item"] for item in shown["items"]] == [1, 2, 3, 4]


def test_a_set_of_tier2_items_is_the_stewards(engine, tenant):
    submitted = submit_set(
        engine, tenant, [glossary_request(), metadata_request("sales.a.b", tier="tier2")]
    )
    assert (submitted.approval.tier, submitted.approval.required_role) == (Tier.TIER2, STEWARD)


def test_a_tenant_policy_decides_the_set_by_its_strictest_cell(engine, uow, tenant):
    admin = person(tenant, "root", "tenant_admin")
    approvals.set_policy(uow, admin, Lane.GOVERNED, Tier.TIER3, "junior_steward")
    approvals.set_policy(uow, admin, Lane.GOVERNED, Tier.TIER2, "senior_steward")
    only_tier3 = submit_set(engine, tenant, [glossary_request("A"), glossary_request("B")])
    assert only_tier3.approval.required_role == "junior_steward"
    both = submit_set(engine, tenant, [glossary_request("C"), business_rule_request()])
    assert (both.approval.tier, both.approval.required_role) == (Tier.TIER2, "senior_steward")


def assert_the_second_item_makes_the_set_tier1(submitted) -> None:
    """The set's second item needs the kernel owner, and so does the whole set, at tier1."""
    assert submitted.items[1].required_role == KERNEL_OWNER
    assert (submitted.approval.tier, submitted.approval.required_role) == (
        Tier.TIER1,
        KERNEL_OWNER,
    )


def test_an_item_against_a_live_tier1_entity_makes_the_set_tier1(engine, tenant):
    approve_metadata(engine, tenant)  # finance.revenue.gross_amount is live at tier1
    demotion = changed(metadata_request(tier="tier2"), tier="tier2")
    submitted = submit_set(engine, tenant, [glossary_request(), demotion])
    assert_the_second_item_makes_the_set_tier1(submitted)


def test_any_invalid_item_refuses_the_whole_set_naming_every_bad_item(engine, tenant):
    before = store_snapshot(engine)
    bad_tier = changed(metadata_request("sales.x.y", tier="tier2"), tier="tier9")
    with pytest.raises(InvalidItems) as refused:
        submit_set(
            engine,
            tenant,
            [
                glossary_request(),
                bad_tier,
                metadata_request(binding={"table": "t", "columns": [{"name": "bad name"}]}),
                "not a request",
                glossary_request(),  # the same entity as item 1
            ],
        )
    message = str(refused.value)
    lines = message.splitlines()
    assert lines[0].startswith("item 2: payload.tier: ")
    assert lines[1].startswith("item 3: payload.binding.columns[0].name: ")
    assert lines[2] == "item 4: request: the request must be a JSON object"
    assert lines[3] == "item 5: entity_key: Gross Revenue is also changed by item 1"
    assert len(lines) == 4 and "item 1" not in message.split(":")[0]
    assert [e.item for e in refused.value.errors] == [2, 3, 4, 5]
    assert store_snapshot(engine) == before


def test_a_draft_lane_item_against_a_live_entity_is_an_item_error(engine, tenant):
    approve_metadata(engine, tenant)
    before = store_snapshot(engine)
    with pytest.raises(InvalidItems) as refused:
        submit_set(
            engine, tenant, [glossary_request(), metadata_request(lane="draft", label="Draft")]
        )
    assert str(refused.value).startswith("item 2: lane: ")
    assert store_snapshot(engine) == before


@pytest.mark.parametrize(
    ("title", "requests", "field"),
    [
        ("", [glossary_request()], "title"),
        ("a, b", [glossary_request()], "title"),
        ("x" * 201, [glossary_request()], "title"),
        ("no..dots", [glossary_request()], "title"),
        ("a\x00b", [glossary_request()], "title"),
        (5, [glossary_request()], "title"),
        ("Empty", [], "requests"),
        ("Not a list", {"a": 1}, "requests"),
        ("Too many", [glossary_request()] * 10_001, "requests"),
    ],
)
def test_a_bad_title_or_size_is_invalid_input(engine, tenant, title, requests, field):
    before = store_snapshot(engine)
    with pytest.raises(InvalidInput) as refused:
        submit_set(engine, tenant, requests, title=title)
    assert refused.value.field == field
    assert store_snapshot(engine) == before


def test_a_single_request_cannot_claim_to_be_a_change_set(uow, tenant):
    raw = {"entity_type": "CHANGE_SET", "tier": "tier3", "lane": "governed", "payload": {}}
    with pytest.raises(InvalidInput, match="POST /change-sets") as refused:
        approvals.submit(uow, person(tenant, "alice"), raw, SETTINGS)
    assert refused.value.field == "entity_type"


# -- approve ---------------------------------------------------------------------------------


def test_approving_applies_every_item_with_its_events_in_item_order(engine, uow, tenant):
    submitted = submit_set(engine, tenant, mixed_requests())
    decided = decide(engine, tenant, submitted.approval.id, reason="all good")
    assert decided.status is ApprovalStatus.APPROVED and decided.decided_by == "bob"
    found = events_of(engine, submitted.approval.id)
    assert [(kind, key) for kind, key, _ in found] == [
        ("approval.approved", "Gross Revenue"),
        ("metadata.approved", "sales.orders.region"),
        ("metadata.changed", "sales.orders.region"),
        ("metadata.profile.due", "sales.orders.region"),
        ("approval.approved", "sales.orders.region"),
        ("metadata.approved", "finance.revenue.gross_amount"),
        ("metadata.changed", "finance.revenue.gross_amount"),
        ("metadata.profile.due", "finance.revenue.gross_amount"),
        ("approval.approved", "finance.revenue.gross_amount"),
        ("kpi.approved", "finance.kpi.margin"),
        ("kpi.changed", "finance.kpi.margin"),
        ("lineage.changed", "finance.kpi.margin"),
        ("approval.approved", "finance.kpi.margin"),
    ]
    decisions = [payload for kind, _, payload in found if kind == "approval.approved"]
    assert [d["item"] for d in decisions] == [1, 2, 3, 4]
    assert {d["approval_id"] for d in decisions} == {str(submitted.approval.id)}
    assert {d["required_role"] for d in decisions} == {KERNEL_OWNER}
    assert {d["reason"] for d in decisions} == {"all good"}
    reader = person(tenant, "carol")
    for key, entity_type in [
        ("Gross Revenue", EntityType.GLOSSARY),
        ("sales.orders.region", EntityType.GLOBAL_METADATA),
        ("finance.revenue.gross_amount", EntityType.GLOBAL_METADATA),
        ("finance.kpi.margin", EntityType.KPI),
    ]:
        entity = catalog.get_entity(uow, reader, key, entity_type)
        assert (entity.version, entity.updated_by) == (1, "bob")
    shown = approvals.show_approval(uow, reader, submitted.approval.id, SETTINGS)
    assert shown["status"] == ApprovalStatus.APPROVED and shown["title"] == "Q3 finance import"


def test_a_set_updates_live_entities_with_compare_and_set(engine, uow, tenant):
    approve_metadata(engine, tenant, key="sales.orders.region", tier="tier2")
    approve_metadata(engine, tenant, key="sales.orders.city", tier="tier2")
    submitted = submit_set(
        engine,
        tenant,
        [
            changed(metadata_request("sales.orders.region", tier="tier2"), label="Region"),
            changed(metadata_request("sales.orders.city", tier="tier2"), label="City"),
            glossary_request(),
        ],
    )
    decide(engine, tenant, submitted.approval.id, "bob", STEWARD)
    reader = person(tenant, "carol")
    region = catalog.get_entity(uow, reader, "sales.orders.region")
    city = catalog.get_entity(uow, reader, "sales.orders.city")
    assert (region.version, region.state["label"]) == (2, "Region")
    assert (city.version, city.state["label"]) == (2, "City")
    changes = [p for k, _, p in events_of(engine, submitted.approval.id) if k == "metadata.changed"]
    assert [(c["previous_version"], c["version"], c["changed_fields"]) for c in changes] == [
        (1, 2, ["label"]),
        (1, 2, ["label"]),
    ]


def test_four_eyes_and_the_role_hold_across_the_set(engine, tenant):
    submitted = submit_set(engine, tenant, mixed_requests())
    before = store_snapshot(engine)
    with pytest.raises(Forbidden, match="four-eyes"):
        decide(engine, tenant, submitted.approval.id, "alice", KERNEL_OWNER)
    with pytest.raises(Forbidden, match="role kernel_owner is required"):
        decide(engine, tenant, submitted.approval.id, "sam", STEWARD)  # every item but one
    with pytest.raises(NotFound):
        decide(engine, uuid.uuid4(), submitted.approval.id)  # another tenant's
    assert store_snapshot(engine) == before


def test_a_stale_item_makes_the_whole_decision_a_conflict_naming_it(engine, uow, tenant):
    approve_metadata(engine, tenant, key="sales.orders.region", tier="tier2")
    submitted = submit_set(
        engine,
        tenant,
        [
            glossary_request(),
            changed(metadata_request("sales.orders.region", tier="tier2"), label="Region"),
        ],
    )
    approve_metadata(engine, tenant, key="sales.orders.region", tier="tier2", label="Moved on")
    before = store_snapshot(engine)
    with pytest.raises(Conflict) as refused:
        decide(engine, tenant, submitted.approval.id, "bob", STEWARD)
    assert str(refused.value).startswith(
        "item 2: stale request: GLOBAL_METADATA sales.orders.region changed after approval "
        f"{submitted.approval.id} was submitted"
    )
    assert store_snapshot(engine) == before  # not even item 1
    shown = change_sets.show(uow, person(tenant, "bob"), submitted.approval.id, SETTINGS)
    assert [item["stale"] for item in shown["items"]] == [False, True]


def test_an_item_creating_an_entity_that_now_exists_is_stale(engine, uow, tenant):
    submitted = submit_set(engine, tenant, [glossary_request("A"), glossary_request("B")])
    single = approvals.submit(uow, person(tenant, "carl"), glossary_request("B"), SETTINGS)
    decide(engine, tenant, single.id, "dora", STEWARD)
    with pytest.raises(Conflict, match=r"^item 2: stale request: GLOSSARY B changed"):
        decide(engine, tenant, submitted.approval.id, "bob", STEWARD)


def test_rejecting_or_cancelling_a_set_applies_nothing(engine, uow, tenant):
    rejected = submit_set(engine, tenant, mixed_requests(), title="Rejected")
    before = store_snapshot(engine)
    with pytest.raises(InvalidInput, match="reason"):
        decide(engine, tenant, rejected.approval.id, command=approvals.reject, reason=" ")
    assert store_snapshot(engine) == before
    done = decide(engine, tenant, rejected.approval.id, command=approvals.reject, reason="no")
    assert done.status is ApprovalStatus.REJECTED
    assert [(k, key) for k, key, _ in events_of(engine, rejected.approval.id)] == [
        ("approval.rejected", "Rejected")
    ]
    with pytest.raises(Conflict, match="already rejected"):
        decide(engine, tenant, rejected.approval.id)
    cancelled = submit_set(engine, tenant, [glossary_request("Z")], title="Cancelled")
    with pytest.raises(Forbidden, match="only the requester"):
        decide(engine, tenant, cancelled.approval.id, command=approvals.cancel)
    gone = decide(engine, tenant, cancelled.approval.id, "alice", command=approvals.cancel)
    assert gone.status is ApprovalStatus.CANCELLED
    assert catalog.list_entities(uow, person(tenant, "x")) == []
    with engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(tables.glossary)).scalar()
            == 0
        )


def test_show_lists_items_with_their_diffs_and_the_combined_impact(engine, uow, tenant):
    approve_metadata(engine, tenant)  # a tier1 field
    approve_metadata(engine, tenant, key="finance.cost.cost_amount", tier="tier2")
    kpi = approvals.submit(uow, person(tenant, "alice"), kpi_request(), SETTINGS)
    decide(engine, tenant, kpi.id, "bob", STEWARD)  # depends on both fields
    rebinding = {
        "source": "warehouse",
        "schema": "sales",
        "table": "orders",
        "columns": [{"name": "net_amount"}],
    }
    submitted = submit_set(
        engine,
        tenant,
        [
            changed(metadata_request("finance.cost.cost_amount", tier="tier2"), binding=rebinding),
            changed(metadata_request(), description="Relabelled only"),
            glossary_request(),
        ],
    )
    shown = change_sets.show(uow, person(tenant, "x"), submitted.approval.id, SETTINGS)
    assert [row["key"] for row in shown["impact"]] == ["finance.kpi.gross_margin"]
    first, second, third = shown["items"]
    assert {c["field"] for c in first["changes"]} == {
        "binding.columns[net_amount]",
        "binding.columns[gross_amount]",
    }
    assert second["changes"] == [
        {
            "field": "description",
            "change": "changed",
            "old": "Order revenue before discounts and tax",
            "new": "Relabelled only",
        }
    ]
    assert {c["change"] for c in third["changes"]} == {"added"}
    assert first["current_state"]["version"] == 1 and third["current_state"] is None
    with pytest.raises(NotFound, match="change set"):  # a single request is no change set
        change_sets.show(uow, person(tenant, "x"), kpi.id, SETTINGS)


def test_approving_a_set_refreshes_the_trust_of_dependent_kpis_once(engine, uow, tenant):
    approve_metadata(engine, tenant, key="finance.revenue.gross_amount", tier="tier2")
    approve_metadata(engine, tenant, key="finance.cost.cost_amount", tier="tier2")
    kpi = approvals.submit(uow, person(tenant, "alice"), kpi_request(), SETTINGS)
    decide(engine, tenant, kpi.id, "bob", STEWARD)
    submitted = submit_set(
        engine,
        tenant,
        [
            changed(metadata_request(key, tier="tier2"), status="deprecated")
            for key in ("finance.revenue.gross_amount", "finance.cost.cost_amount")
        ],
    )
    decide(engine, tenant, submitted.approval.id, "bob", STEWARD)
    with engine.connect() as connection:
        trust = connection.execute(sa.select(tables.kpi_trust)).one()
    assert trust.canonical_key == "finance.kpi.gross_margin" and trust.trust_score is None


# -- races -----------------------------------------------------------------------------------


def test_two_approvers_racing_apply_the_set_once(engine, tenant):
    submitted = submit_set(engine, tenant, [glossary_request("A"), glossary_request("B")])
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def approve(user: str) -> None:
        barrier.wait()
        try:
            decide(engine, tenant, submitted.approval.id, user, STEWARD)
            outcomes.append("approved")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=approve, args=(u,)) for u in ("bob", "carol")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["approved", "conflict"]
    assert event_types(engine, submitted.approval.id) == ["approval.approved"] * 2


def _approve_in_background(engine, tenant, approval_id) -> tuple[threading.Thread, list[Exception]]:
    """Bob approves the set in a thread of its own; the conflict he meets, if any, is listed."""
    errors: list[Exception] = []

    def approve() -> None:
        try:
            decide(engine, tenant, approval_id, "bob", STEWARD)
        except Conflict as exc:
            errors.append(exc)

    thread = threading.Thread(target=approve)
    thread.start()
    return thread, errors


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_an_entity_written_while_the_set_waits_undoes_every_item(engine, tenant):
    """PostgreSQL, deterministic: another transaction holds an item's row, the set's approval
    passes its staleness check and waits on that row; the other transaction moves the entity
    on and commits; the set's compare-and-set then finds it changed: nothing of the set stays,
    and the conflict names the item."""
    approve_metadata(engine, tenant, key="sales.orders.region", tier="tier2")
    submitted = submit_set(
        engine,
        tenant,
        [
            glossary_request("A"),
            changed(metadata_request("sales.orders.region", tier="tier2"), label="Region"),
        ],
    )
    table = tables.global_metadata
    holder = engine.connect()
    holder.begin()
    holder.execute(sa.select(table).where(table.c.tenant_id == tenant).with_for_update())
    thread, errors = _approve_in_background(engine, tenant, submitted.approval.id)
    _wait_for_lock_wait(engine)
    holder.execute(
        sa.update(table).where(table.c.tenant_id == tenant).values(version=table.c.version + 1)
    )
    holder.commit()
    holder.close()
    thread.join(timeout=30)
    [conflict] = errors
    assert str(conflict).startswith("item 2: stale request: GLOBAL_METADATA sales.orders.region")
    with engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(tables.glossary)).scalar()
            == 0
        )
    assert event_types(engine, submitted.approval.id) == []
    status = approvals.get_approval(UnitOfWork(engine), person(tenant, "x"), submitted.approval.id)
    assert status.status is ApprovalStatus.PENDING


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_an_entity_created_while_the_set_waits_undoes_every_item(engine, tenant):
    """PostgreSQL, deterministic: another transaction inserts an item's new entity first; the
    set's insert waits on the unique key, then fails: the savepoint undoes the set's writes and
    the conflict names the item."""
    submitted = submit_set(engine, tenant, [glossary_request("A"), glossary_request("B")])
    holder = engine.connect()
    holder.begin()
    holder.execute(
        sa.insert(tables.glossary).values(
            id=uuid.uuid4(),
            tenant_id=tenant,
            canonical_key="B",
            tier="tier3",
            status="active",
            version=1,
            updated_at=sa.func.now(),
            updated_by="someone",
            term="B",
            definition="d",
            synonyms=[],
            related_keys=[],
        )
    )
    thread, errors = _approve_in_background(engine, tenant, submitted.approval.id)
    _wait_for_lock_wait(engine)
    holder.commit()
    holder.close()
    thread.join(timeout=30)
    [conflict] = errors
    assert str(conflict).startswith("item 2: stale request: GLOSSARY B changed")
    with engine.connect() as connection:
        keys = connection.execute(sa.select(tables.glossary.c.canonical_key)).scalars().all()
    assert keys == ["B"]  # the other transaction's, and nothing of the set


def _wait_for_lock_wait(engine, timeout: float = 20.0) -> None:
    """Until some session of this database waits on a lock."""
    import time

    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar()
            if waiting:
                return
            time.sleep(0.05)
    raise TimeoutError("no session waited on a lock")


def test_a_large_set_stores_exactly_what_single_approvals_would(engine, uow, tenant):
    """Over 20 items of each type, so PostgreSQL takes its batch paths (rows and events from
    one JSON array): every entity and every event's payload equals what single approvals
    write."""
    requests = []
    for n in range(30):
        requests += [
            metadata_request(f"bulk.f{n}", tier="tier2"),
            changed(kpi_request(f"bulk.kpi{n}"), depends_on=[f"bulk.f{n}"]),
            business_rule_request(f"bulk.rule{n}"),
            glossary_request(f"Term {n}"),
        ]
    alone = uuid.uuid4()
    for request in requests:
        pending = approvals.submit(uow, person(alone, "alice"), request, SETTINGS)
        decide(engine, alone, pending.id, "bob", STEWARD)
    submitted = submit_set(engine, tenant, requests)
    decide(engine, tenant, submitted.approval.id, "bob", STEWARD)

    def entities(of_tenant):
        found = {}
        with engine.connect() as connection:
            for entity_type, table in tables.ENTITY_TABLES.items():
                for row in connection.execute(
                    sa.select(table).where(table.c.tenant_id == of_tenant)
                ):
                    state = row._asdict()
                    for bookkeeping in ("id", "tenant_id", "updated_at"):
                        state.pop(bookkeeping)
                    found[(entity_type, row.canonical_key)] = state
        return found

    def payloads(of_tenant):
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(tables.events.c.type, tables.events.c.entity_key, tables.events.c.payload)
                .where(tables.events.c.tenant_id == of_tenant)
                .order_by(tables.events.c.id)
            )
            return [
                (kind, key, {k: v for k, v in payload.items() if k not in ("approval_id", "item")})
                for kind, key, payload in rows
            ]

    assert len(entities(tenant)) == 120
    assert entities(tenant) == entities(alone)
    assert payloads(tenant) == [p for p in payloads(alone) if not p[0].startswith("kpi.quality")]
    numbers = [
        payload["item"]
        for kind, _, payload in events_of(engine, submitted.approval.id)
        if kind == "approval.approved"
    ]
    assert numbers == list(range(1, 121))


def test_invalid_items_list_every_error_and_a_problem_shows_the_first_twenty():
    errors = [ItemError(n, "payload.tier", "bad") for n in range(1, 26)] + [
        ItemError(26, None, "not a request")
    ]
    refused = InvalidItems(errors)
    lines = str(refused).splitlines()
    assert len(lines) == 26 and lines[-1] == "item 26: not a request"
    assert refused.detail.splitlines()[-1] == "... and 6 more (see errors)"
    assert len(refused.detail.splitlines()) == 21
    assert errors[-1].as_dict() == {"item": "26", "field": "", "message": "not a request"}
    assert refused.field == "requests"


def test_an_item_unbinding_an_input_of_a_tier1_kpi_makes_the_set_tier1(engine, uow, tenant):
    for key in ("finance.revenue.gross_amount", "finance.cost.cost_amount"):
        approve_metadata(engine, tenant, key=key, tier="tier2")
    kpi = approvals.submit(uow, person(tenant, "alice"), kpi_request(tier="tier1"), SETTINGS)
    decide(engine, tenant, kpi.id)
    unbinding = changed(metadata_request(tier="tier2"), status="deprecated")
    submitted = submit_set(engine, tenant, [glossary_request(), unbinding])
    assert_the_second_item_makes_the_set_tier1(submitted)
    relabel = changed(metadata_request(tier="tier2"), label="Only a label")
    other = submit_set(engine, tenant, [glossary_request("B"), relabel], title="Relabel")
    assert (other.approval.tier, other.approval.required_role) == (Tier.TIER2, STEWARD)


def test_an_approved_kpi_item_gets_its_first_trust(engine, tenant):
    submitted = submit_set(engine, tenant, [kpi_request("finance.kpi.margin")])
    decide(engine, tenant, submitted.approval.id, "bob", STEWARD)
    with engine.connect() as connection:
        keys = connection.execute(sa.select(tables.kpi_trust.c.canonical_key)).scalars().all()
    assert keys == ["finance.kpi.margin"]


def test_a_set_is_judged_again_when_decided(engine, uow, tenant):
    """An item that would now deprecate an input of a tier1 KPI approved since the set was
    submitted makes the whole set a tier1 decision: a steward may no longer decide it."""
    for key in ("finance.revenue.gross_amount", "finance.cost.cost_amount"):
        approve_metadata(engine, tenant, key=key, tier="tier2")
    deprecation = changed(metadata_request(tier="tier2"), status="deprecated")
    submitted = submit_set(engine, tenant, [glossary_request(), deprecation])
    assert submitted.approval.required_role == STEWARD
    kpi = approvals.submit(uow, person(tenant, "alice"), kpi_request(tier="tier1"), SETTINGS)
    decide(engine, tenant, kpi.id)
    before = store_snapshot(engine)
    with pytest.raises(Forbidden, match="role kernel_owner is required"):
        decide(engine, tenant, submitted.approval.id, "sam", STEWARD)
    with pytest.raises(Forbidden, match="role kernel_owner is required"):
        decide(engine, tenant, submitted.approval.id, "sam", STEWARD, command=approvals.reject,
               reason="no")  # fmt: skip
    assert store_snapshot(engine) == before
    judged = approvals.get_judged(uow, person(tenant, "x"), submitted.approval.id)
    assert (judged.required_role, judged.tier) == (KERNEL_OWNER, Tier.TIER2)
    decided = decide(engine, tenant, submitted.approval.id, "olga", KERNEL_OWNER)
    assert decided.status is ApprovalStatus.APPROVED and decided.required_role == KERNEL_OWNER


def test_a_set_has_no_binding_to_preview(engine, uow, tenant):
    from mdstudio_core.service_layer import profiling

    submitted = submit_set(engine, tenant, [metadata_request()])
    owner = person(tenant, "olga", KERNEL_OWNER)
    with pytest.raises(InvalidInput, match="only GLOBAL_METADATA"):
        profiling.preview_approval(uow, SETTINGS, owner, submitted.approval.id)
