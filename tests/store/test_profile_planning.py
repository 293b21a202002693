"""The cost guards between "a profile is due" and a scan (`service_layer.profile_requests`),
without Dagster: candidates from the outbox, the NO_BINDING and COST_GUARD skips, one batch per
table, scheduled passes and manual requests. `make mutation` found these exercised only by the
Dagster tests (tests/pipelines), which it leaves out."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from mdstudio_core.domain.errors import NotFound
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.model import (
    PassProgress,
    Priority,
    ProfileReason,
    SkipReason,
    Tier,
    Trigger,
)
from mdstudio_core.service_layer import profile_requests
from mdstudio_core.service_layer.profile_requests import (
    PlannedEntity,
    ProfileCandidate,
    TableBatch,
    candidates_from_events,
    pass_page,
    plan,
)
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import (
    DEMO_BINDING,
    approve_metadata,
    person,
    stored_event,
    stored_profile,
)

KEY = "finance.revenue.gross_amount"
NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
TENANT = uuid.UUID(int=0x51)


def event(event_id: int, event_type: str, key: str = KEY, tenant=TENANT, **payload) -> Event:
    return stored_event(event_id, event_type, tenant, key, payload, actor="alice", occurred_at=NOW)


def due(event_id: int, key: str = KEY, priority: str = "normal", **payload) -> Event:
    approval = payload.pop("approval_id", str(uuid.UUID(int=event_id)))
    return event(
        event_id,
        "metadata.profile.due",
        key,
        canonical_key=key,
        tier="tier1" if priority == "high" else "tier2",
        reason="STRUCTURAL",
        priority=priority,
        approval_id=approval,
        version=1,
        binding={},
        **payload,
    )


def requested(event_id: int, key: str = KEY, force: bool = False) -> Event:
    return event(
        event_id,
        "metadata.profile.requested",
        key,
        canonical_key=key,
        force=force,
        trigger="manual",
        requested_by="alice",
    )


def test_profile_events_become_one_candidate_per_entity():
    other = "finance.revenue.net_amount"
    found = candidates_from_events(
        [
            due(1, priority="normal"),
            event(2, "metadata.changed", KEY),
            requested(3, other),
            due(4, key=other, priority="high"),
            event(5, "approval.approved", other),
        ]
    )
    assert found == [
        candidate(TENANT, KEY, Priority.NORMAL, approval_id=uuid.UUID(int=1), event_ids=(1,)),
        candidate(TENANT, other, Priority.HIGH, approval_id=uuid.UUID(int=4), event_ids=(3, 4)),
    ]


def test_a_manual_request_is_high_priority_and_may_force():
    [candidate] = candidates_from_events([requested(7, force=True)])
    assert candidate == ProfileCandidate(
        tenant_id=TENANT,
        canonical_key=KEY,
        trigger=Trigger.MANUAL,
        reason=ProfileReason.MANUAL,
        priority=Priority.HIGH,
        approval_id=None,
        event_ids=(7,),
        force=True,
    )
    assert candidate.entity == (TENANT, KEY)


def test_merged_events_keep_every_id_the_highest_priority_and_any_force():
    [merged] = candidates_from_events(
        [requested(1, force=True), due(2, priority="normal"), requested(3)]
    )
    assert merged.event_ids == (1, 2, 3)
    assert merged.force is True
    assert merged.priority is Priority.HIGH
    [urgent] = candidates_from_events([due(1, priority="high"), due(2, priority="normal")])
    assert urgent.priority is Priority.HIGH
    [later] = candidates_from_events([due(1, priority="normal"), due(2, priority="high")])
    assert (later.priority, later.force, later.approval_id) == (
        Priority.HIGH,
        False,
        uuid.UUID(int=2),
    )


def test_a_kpis_new_inputs_are_approval_candidates_of_normal_priority():
    """`lineage.changed` asks, in the KPI's tenant and for its approval, for each added input."""
    change = event(
        9,
        "lineage.changed",
        "finance.margin",
        canonical_key="finance.margin",
        added_inputs=["a", "b"],
        removed_inputs=[],
    )
    assert candidates_from_events([change]) == [
        ProfileCandidate(
            tenant_id=TENANT,
            canonical_key=key,
            trigger=Trigger.APPROVAL,
            reason=ProfileReason.KPI_DEPENDENCY,
            priority=Priority.NORMAL,
            approval_id=change.correlation_id,
            event_ids=(9,),
        )
        for key in ("a", "b")
    ]


def test_the_same_key_in_two_tenants_is_two_candidates():
    other_tenant = uuid.UUID(int=0x52)
    found = candidates_from_events([due(1), due(2, tenant=other_tenant)])
    assert [c.tenant_id for c in found] == [TENANT, other_tenant]


def candidate(
    tenant, key=KEY, priority=Priority.NORMAL, force=False, **details: Any
) -> ProfileCandidate:
    """A structural change's candidate, as an approval's events make it."""
    return ProfileCandidate(
        tenant_id=tenant,
        canonical_key=key,
        trigger=Trigger.APPROVAL,
        reason=ProfileReason.STRUCTURAL,
        priority=priority,
        force=force,
        **details,
    )


def profiled_at(engine, tenant, key: str, at: dt.datetime) -> None:
    with UnitOfWork(engine) as uow:
        uow.profiles.add(stored_profile(tenant, key, at))
        uow.commit()


def test_entities_on_one_table_share_a_batch_and_the_rest_are_skipped_with_why(engine, uow, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.t2", tier="tier2", binding=DEMO_BINDING)
    approve_metadata(
        engine, tenant, key="finance.other", binding={**DEMO_BINDING, "schema": "sales"}
    )
    approve_metadata(engine, tenant, key="finance.unbound", binding=None)
    approve_metadata(engine, tenant, key="finance.old", binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.old", binding=DEMO_BINDING, status="deprecated")
    t2 = candidate(tenant, "finance.t2", Priority.LOW)
    t1 = candidate(tenant, KEY, Priority.HIGH)
    other = candidate(tenant, "finance.other")
    skipped = [
        candidate(tenant, "finance.unbound"),
        candidate(tenant, "finance.old"),
        candidate(tenant, "finance.nowhere"),
    ]

    result = plan(uow, [t2, t1, *skipped, other], now=NOW, min_rerun=12 * HOUR)

    assert result.batches == [
        TableBatch(
            tenant,
            "demo",
            None,
            "orders",
            (PlannedEntity(t2, Tier.TIER2), PlannedEntity(t1, Tier.TIER1)),
        ),
        TableBatch(tenant, "demo", "sales", "orders", (PlannedEntity(other, Tier.TIER1),)),
    ]
    shared = result.batches[0]
    assert (shared.tier, shared.priority, shared.keys) == (
        Tier.TIER1,
        Priority.HIGH,
        ["finance.t2", KEY],
    )
    assert shared.table_name == "demo.orders"
    assert result.batches[1].table_name == "demo.sales.orders"
    assert [(s.candidate, s.reason, s.detail) for s in result.skipped] == [
        (skipped[0], SkipReason.NO_BINDING, "the entity is not bound to a warehouse table"),
        (skipped[1], SkipReason.NO_BINDING, "the entity is deprecated"),
        (skipped[2], SkipReason.NO_BINDING, "the entity is not bound to a warehouse table"),
    ]


def test_batches_are_ordered_by_tenant_then_table(engine, uow):
    first, second = uuid.UUID(int=1), uuid.UUID(int=2)
    for tenant in (second, first):
        for table in ("zeta", "alpha"):
            approve_metadata(
                engine, tenant, key=f"finance.{table}", binding={**DEMO_BINDING, "table": table}
            )
    candidates = [
        candidate(tenant, f"finance.{table}")
        for tenant in (second, first)
        for table in ("zeta", "alpha")
    ]
    result = plan(uow, candidates, now=NOW, min_rerun=HOUR)
    assert [(b.tenant_id, b.table) for b in result.batches] == [
        (first, "alpha"),
        (first, "zeta"),
        (second, "alpha"),
        (second, "zeta"),
    ]


def test_a_profile_or_request_within_the_interval_is_a_cost_guard_skip(engine, uow, tenant):
    for key in ("finance.recent", "finance.edge", "finance.forced", "finance.asked"):
        approve_metadata(engine, tenant, key=key, binding=DEMO_BINDING)
    profiled_at(engine, tenant, "finance.recent", NOW - 11 * HOUR)
    profiled_at(engine, tenant, "finance.recent", NOW - 30 * HOUR)
    profiled_at(engine, tenant, "finance.edge", NOW - 12 * HOUR)
    profiled_at(engine, tenant, "finance.forced", NOW - HOUR)
    profiled_at(engine, tenant, "finance.asked", NOW - 40 * HOUR)
    recent = candidate(tenant, "finance.recent")
    edge = candidate(tenant, "finance.edge")
    forced = candidate(tenant, "finance.forced", force=True)
    asked = candidate(tenant, "finance.asked")

    result = plan(
        uow,
        [recent, edge, forced, asked],
        now=NOW,
        min_rerun=12 * HOUR,
        recently_requested={(tenant, "finance.asked"): NOW - 2 * HOUR},
    )

    [batch] = result.batches
    assert batch.keys == ["finance.edge", "finance.forced"]
    skips = [(s.candidate, s.reason, s.detail) for s in result.skipped]
    recent_at = (NOW - 11 * HOUR).isoformat()
    asked_at = (NOW - 2 * HOUR).isoformat()
    assert skips == [
        (
            recent,
            SkipReason.COST_GUARD,
            f"profiled or requested at {recent_at}, within the minimum rerun interval of 12 h",
        ),
        (
            asked,
            SkipReason.COST_GUARD,
            f"profiled or requested at {asked_at}, within the minimum rerun interval of 12 h",
        ),
    ]


def test_a_request_older_than_the_last_profile_does_not_hide_it(engine, uow, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    profiled_at(engine, tenant, KEY, NOW - HOUR)
    result = plan(
        uow,
        [candidate(tenant)],
        now=NOW,
        min_rerun=1.5 * HOUR,
        recently_requested={(tenant, KEY): NOW - 30 * HOUR},
    )
    [skip] = result.skipped
    assert skip.detail.startswith(f"profiled or requested at {(NOW - HOUR).isoformat()},")
    assert skip.detail.endswith("interval of 1.5 h")


def test_a_zero_interval_profiles_again(engine, uow, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    profiled_at(engine, tenant, KEY, NOW)
    result = plan(uow, [candidate(tenant)], now=NOW, min_rerun=dt.timedelta(0))
    assert [b.keys for b in result.batches] == [[KEY]] and result.skipped == []


def test_a_schedule_covers_the_active_bound_entities_of_its_tier_in_every_tenant(engine, uow):
    first, second = uuid.UUID(int=1), uuid.UUID(int=2)
    for tenant in (second, first):
        approve_metadata(engine, tenant, key="finance.t1", binding=DEMO_BINDING)
        approve_metadata(engine, tenant, key="finance.t2", tier="tier2", binding=DEMO_BINDING)
    approve_metadata(engine, first, key="finance.unbound", binding=None)
    approve_metadata(engine, first, key="finance.draft", binding=DEMO_BINDING, lane="draft")
    approve_metadata(engine, first, key="finance.gone", binding=DEMO_BINDING)
    approve_metadata(engine, first, key="finance.gone", binding=DEMO_BINDING, status="deprecated")
    tier1 = profile_requests.queue_pass(uow, "t1", Tier.TIER1, "s", NOW)
    tier2 = profile_requests.queue_pass(uow, "t2", Tier.TIER2, "s", NOW)

    page = pass_page(uow, tier1, None, 10)
    assert page.candidates == [
        ProfileCandidate(
            tenant_id=tenant,
            canonical_key="finance.t1",
            trigger=Trigger.SCHEDULE,
            reason=ProfileReason.SCHEDULED,
            priority=Priority.NORMAL,
        )
        for tenant in (first, second)
    ]
    assert (page.tables, page.through, page.last) == (2, (str(second), "demo", "", "orders"), True)
    tier2_page = pass_page(uow, tier2, None, 10)
    assert [(c.tenant_id, c.canonical_key, c.priority) for c in tier2_page.candidates] == [
        (first, "finance.t2", Priority.LOW),
        (second, "finance.t2", Priority.LOW),
    ]


def test_a_pass_is_planned_a_page_at_a_time_and_the_last_page_says_so(engine, uow):
    tenants = [uuid.UUID(int=i) for i in (1, 2, 3)]
    for tenant in tenants:
        approve_metadata(engine, tenant, key="finance.t1", binding=DEMO_BINDING)
    queued = profile_requests.queue_pass(uow, "t1", Tier.TIER1, "s", NOW)
    first = pass_page(uow, queued, None, 2)
    assert [c.tenant_id for c in first.candidates] == tenants[:2]
    assert (first.tables, first.last) == (2, False)
    second = pass_page(uow, queued, first.through, 2)
    assert [c.tenant_id for c in second.candidates] == tenants[2:]
    assert (second.tables, second.through, second.last) == (
        1,
        (str(tenants[2]), "demo", "", "orders"),
        True,
    )
    exact = pass_page(uow, queued, None, 3)
    assert (exact.tables, exact.last) == (3, True)
    empty = pass_page(uow, queued, second.through, 2)
    assert (empty.candidates, empty.tables, empty.through, empty.last) == (
        [],
        0,
        second.through,
        True,
    )


def test_resuming_records_the_committed_progress_and_moves_to_the_next_open_pass(engine):
    def uow() -> UnitOfWork:
        return UnitOfWork(engine)

    assert profile_requests.resume_pass(uow(), None, NOW) is None
    first = profile_requests.queue_pass(uow(), "t1", Tier.TIER1, "a", NOW)
    assert profile_requests.queue_pass(uow(), "t1", Tier.TIER1, "a", NOW + HOUR) == first
    second = profile_requests.queue_pass(uow(), "t2", Tier.TIER2, "a", NOW)
    assert profile_requests.resume_pass(uow(), None, NOW) == (first, PassProgress(first.id))
    through = (str(TENANT), "demo", "", "orders")
    halfway = PassProgress(first.id, through, 4, 2)
    current, progress = profile_requests.resume_pass(uow(), halfway, NOW)
    assert (current.id, progress) == (first.id, halfway)
    with UnitOfWork(engine) as reader:
        assert reader.passes.get(first.id).tables_planned == 4
    done = PassProgress(first.id, through, 5, 3, finished=True)
    assert profile_requests.resume_pass(uow(), done, NOW + HOUR) == (
        second,
        PassProgress(second.id),
    )
    with UnitOfWork(engine) as reader:
        recorded = reader.passes.get(first.id)
    assert (recorded.tables_planned, recorded.runs_requested) == (5, 3)
    assert recorded.finished_at == NOW + HOUR
    assert profile_requests.resume_pass(uow(), PassProgress(second.id, finished=True), NOW) is None


def test_a_manual_request_is_an_event_in_the_outbox(engine, uow, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    steward = person(tenant, "sam", "metadata_steward")
    written = profile_requests.request_profile(uow, steward, KEY, force=True)
    assert (written.type, written.entity_key, written.actor) == (
        "metadata.profile.requested",
        KEY,
        "sam",
    )
    assert written.payload == {
        "canonical_key": KEY,
        "trigger": "manual",
        "force": True,
        "requested_by": "sam",
        "full": False,
    }
    with uow:
        [stored] = uow.events.list(tenant_id=tenant, entity_key=KEY, after=written.id - 1)
    assert stored == written
    [again] = candidates_from_events([stored])
    assert (again.trigger, again.force, again.full) == (Trigger.MANUAL, True, False)
    unforced = profile_requests.request_profile(uow, steward, KEY)
    assert unforced.payload["force"] is False
    full = profile_requests.request_profile(uow, steward, KEY, full=True)
    [merged] = candidates_from_events([stored, full])
    assert (merged.force, merged.full) == (True, True)


def test_a_manual_request_for_an_unknown_entity_is_not_found(engine, uow, tenant):
    approve_metadata(engine, uuid.uuid4(), key=KEY, binding=DEMO_BINDING)
    with pytest.raises(NotFound, match=KEY):
        profile_requests.request_profile(uow, person(tenant, "sam"), KEY)
