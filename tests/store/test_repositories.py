"""Repository contracts the services lean on, checked directly on both backends: the entity
compare-and-set, batch lookups returning only what was asked, profile history's page and order,
a run saving an entity once, token listing order, notification subscriptions and deliveries
(order, paging, when due, which are open), console sessions, the outbox readers' cursors, and
the lineage reads (tenant names, the graph, latest profiles, KPI trust). (Surviving mutants of
`make mutation` showed that no test told these apart from their broken variants.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.repositories import ApprovalRepository
from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.consumers import ConsumerCursor, DeadLetterStatus
from mdstudio_core.domain.events import Event, NewEvent, validate_event
from mdstudio_core.domain.incidents import IncidentStatus
from mdstudio_core.domain.lineage import TrustState
from mdstudio_core.domain.model import (
    ApiToken,
    ApprovalStatus,
    EntityStatus,
    EntityType,
    PassProgress,
    Tier,
)
from mdstudio_core.domain.notifications import DeliveryStatus, Subscription
from mdstudio_core.service_layer import approvals
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import (
    DEMO_BINDING,
    SETTINGS,
    SUBSCRIPTION,
    T0,
    add_entity,
    approve_metadata,
    bound_field,
    delivery,
    incident,
    make_event,
    metadata_request,
    person,
    stored_profile,
)

KEY = "finance.revenue.gross_amount"


def utc(at: dt.datetime) -> dt.datetime:
    """SQLite gives datetimes back naive (in UTC)."""
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def test_an_entity_update_is_a_compare_and_set_on_its_version(engine, uow, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.other", binding=DEMO_BINDING)
    with uow:
        live = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, KEY)
        other = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, "finance.other")
    assert live.version == 1
    state = {**live.state, "label": "Gross amount (EUR)"}

    with uow:
        stale = uow.entities.update(EntityType.GLOBAL_METADATA, tenant, KEY, 2, state, "eve", T0)
        done = uow.entities.update(EntityType.GLOBAL_METADATA, tenant, KEY, 1, state, "dan", T0)
        again = uow.entities.update(EntityType.GLOBAL_METADATA, tenant, KEY, 1, state, "eve", T0)
        uow.commit()
    assert (stale, done, again) == (False, True, False)

    with uow:
        updated = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, KEY)
        untouched = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, "finance.other")
    assert (updated.version, updated.updated_by, utc(updated.updated_at)) == (2, "dan", T0)
    assert updated.state["label"] == "Gross amount (EUR)"
    assert untouched == other


def test_a_batch_lookup_returns_exactly_the_entities_asked_for(engine, uow, tenant):
    other_tenant = uuid.uuid4()
    for owner in (tenant, other_tenant):
        for key in ("finance.a", "finance.b", "finance.c"):
            approve_metadata(engine, owner, key=key, binding=DEMO_BINDING)
    asked = [(tenant, "finance.a"), (tenant, "finance.c"), (other_tenant, "finance.b")]
    with uow:
        found = uow.entities.get_many(EntityType.GLOBAL_METADATA, [*asked, (tenant, "nope")])
    assert sorted(found, key=str) == sorted(asked, key=str)
    for (owner, key), entity in found.items():
        assert (entity.tenant_id, entity.canonical_key) == (owner, key)
        assert entity.entity_type is EntityType.GLOBAL_METADATA
        assert entity.binding is not None and entity.binding.table == "orders"


def test_a_scheduled_pass_reads_active_bound_entities_of_one_tier(engine, uow, tenant):
    approve_metadata(engine, tenant, key="finance.t1", binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.a_t1", binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.t2", tier="tier2", binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.unbound", binding=None)
    approve_metadata(engine, tenant, key="finance.draft", binding=DEMO_BINDING, lane="draft")
    orders = (str(tenant), "demo", "", "orders")
    with uow:
        assert uow.entities.bound_tables(Tier.TIER1, None, 10) == [orders]
        [first, bound] = uow.entities.bound_on_tables(Tier.TIER1, None, orders)  # by key
        [tier2] = uow.entities.bound_on_tables(Tier.TIER2, None, orders)
        assert uow.entities.bound_on_tables(Tier.TIER1, orders, orders) == []
    assert first.canonical_key == "finance.a_t1"
    assert (bound.canonical_key, bound.entity_type, bound.status) == (
        "finance.t1",
        EntityType.GLOBAL_METADATA,
        EntityStatus.ACTIVE,
    )
    assert tier2.canonical_key == "finance.t2"


def test_a_pass_pages_tables_in_tenant_source_schema_table_order_each_table_whole(uow):
    first, second = uuid.UUID(int=1), uuid.UUID(int=2)
    column = [{"name": "id"}]
    with uow:
        for tenant in (second, first):
            for source, schema, table in [
                ("wh", "sales", "b"),
                ("wh", None, "z"),
                ("dw", "sales", "a"),
                ("wh", "sales", "a"),
            ]:
                binding = {"source": source, "table": table, "columns": column}
                if schema:
                    binding["schema"] = schema
                for field in ("f1", "f2"):
                    bound_field(uow, tenant, f"k.{source}.{schema}.{table}.{field}", binding)
        bound_field(
            uow, first, "k.tier2", {"source": "aa", "table": "t", "columns": column}, tier="tier2"
        )
        bound_field(
            uow,
            first,
            "k.old",
            {"source": "aa", "table": "t", "columns": column},
            status="deprecated",
        )
        uow.commit()
    order = [
        (str(tenant), source, schema, table)
        for tenant in (first, second)
        for source, schema, table in [
            ("dw", "sales", "a"),
            ("wh", "", "z"),
            ("wh", "sales", "a"),
            ("wh", "sales", "b"),
        ]
    ]
    with uow:
        pages, after = [], None
        while page := uow.entities.bound_tables(Tier.TIER1, after, 3):
            pages.append(page)
            entities = uow.entities.bound_on_tables(Tier.TIER1, after, page[-1])
            assert len(entities) == 2 * len(page)  # every field of each table of the page
            after = page[-1]
        assert uow.entities.bound_tables(Tier.TIER2, None, 3) == [(str(first), "aa", "", "t")]
    assert [t for page in pages for t in page] == order
    assert [len(page) for page in pages] == [3, 3, 2]


def test_a_pass_is_recorded_once_per_slot_and_keeps_its_progress(uow):
    later = T0 + dt.timedelta(minutes=5)
    with uow:
        queued = uow.passes.add("tier1_profiling_schedule", Tier.TIER1, "2026-01-01T02:00", T0)
        again = uow.passes.add("tier1_profiling_schedule", Tier.TIER1, "2026-01-01T02:00", later)
        other = uow.passes.add("tier2_profiling_schedule", Tier.TIER2, "2026-01-01T02:00", T0)
        uow.commit()
    assert again == queued and other.id > queued.id
    assert (queued.tier, queued.requested_at, queued.finished_at) == (Tier.TIER1, T0, None)
    through = (str(uuid.UUID(int=1)), "wh", "", "t")
    with uow:
        assert uow.passes.next_open(0) == queued
        uow.passes.record(PassProgress(queued.id, through, 3, 1, finished=False), T0)
        assert uow.passes.get(queued.id).finished_at is None
        done = PassProgress(queued.id, through, 5, 2, finished=True)
        uow.passes.record(done, later)
        uow.passes.record(done, later + dt.timedelta(hours=1))
        uow.commit()
    with uow:
        recorded = uow.passes.get(queued.id)
        assert uow.passes.next_open(0) == other
        assert uow.passes.next_open(other.id) is None
        assert uow.passes.get(999) is None
    assert (recorded.planned_through, recorded.tables_planned, recorded.runs_requested) == (
        through,
        5,
        2,
    )
    assert recorded.finished_at == later  # the first finish is kept


def test_a_run_saves_an_entity_once_and_other_entities_of_the_run_still_save(uow, tenant):
    first = stored_profile(tenant, KEY, T0)
    later = stored_profile(tenant, KEY, T0 + dt.timedelta(minutes=1))
    retry = dataclasses.replace(later, run_id=first.run_id)
    sibling = dataclasses.replace(stored_profile(tenant, "finance.other", T0), run_id=first.run_id)
    with uow:
        assert uow.profiles.add(first) is True
        assert uow.profiles.add(retry) is False
        assert uow.profiles.add(sibling) is True
        assert uow.profiles.saved_in_run(first.run_id, [first.entity_urn, "urn:none"]) == {
            first.entity_urn
        }
        uow.commit()
    with uow:
        assert [p.id for p in uow.profiles.history(tenant, KEY)] == [first.id]


def test_profile_history_is_newest_first_twenty_by_default(uow, tenant):
    profiles = [stored_profile(tenant, KEY, T0 + dt.timedelta(hours=h)) for h in range(22)]
    tied = [stored_profile(tenant, KEY, T0 + dt.timedelta(hours=30)) for _ in range(3)]
    with uow:
        for profile in [*profiles, *tied]:
            uow.profiles.add(profile)
        uow.commit()
    with uow:
        history = uow.profiles.history(tenant, KEY)
        short = uow.profiles.history(tenant, KEY, limit=4)
    assert len(history) == 20
    assert [p.id for p in history[:3]] == sorted(p.id for p in tied)  # ties: by id
    assert [p.id for p in history[3:]] == [p.id for p in reversed(profiles)][:17]
    assert [p.id for p in short] == [p.id for p in history[:4]]


def test_tokens_are_listed_oldest_first_then_by_id(uow, tenant):
    ids = [uuid.UUID(int=n) for n in (3, 2, 1)]
    with uow:
        for n, token_id in enumerate(ids):
            at = T0 if n else T0 - dt.timedelta(days=1)  # the first is the oldest
            uow.tokens.add(token_id, f"hash-{n}", person(tenant, "ana", "steward"), at, None)
        uow.tokens.add(uuid.uuid4(), "hash-x", person(uuid.uuid4(), "bo"), T0, None)
        uow.commit()
    with uow:
        listed = [token.id for token in uow.tokens.list(tenant)]
        everyone = uow.tokens.list()
    assert listed == [ids[0], uuid.UUID(int=1), uuid.UUID(int=2)]
    assert len(everyone) == 4


def test_a_decision_is_recorded_only_while_the_request_is_pending(uow, tenant):
    alice = person(tenant, "alice")
    pending = approvals.submit(uow, alice, metadata_request(), SETTINGS)
    bob = person(tenant, "bob", pending.required_role)
    now = dt.datetime.now(dt.UTC)
    rejected, _ = pending.reject(bob, now, "no")
    approved, _ = pending.approve(bob, None, now, None)
    with uow:
        assert uow.approvals.record_decision(rejected) is True
        assert uow.approvals.record_decision(approved) is False
        uow.commit()
    stored = approvals.get_approval(uow, alice, pending.id)
    assert (stored.status, stored.decided_by, stored.decision_reason) == ("rejected", "bob", "no")
    assert utc(stored.decided_at) == now


def new_event(tenant: uuid.UUID, key: str, size: int) -> NewEvent:
    """A `metadata.profile.failed` event whose payload is about `size` bytes of JSON."""
    payload = {"canonical_key": key, "tier": "tier1", "run_id": None, "error": "x" * size}
    valid = validate_event("metadata.profile.failed", payload)
    return make_event("metadata.profile.failed", tenant, key, valid, occurred_at=T0)


def test_the_outbox_appends_in_order_and_pages_by_id_count_and_bytes(uow, tenant):
    other = uuid.uuid4()
    with uow:
        written = uow.events.append(
            [new_event(tenant if n % 2 else other, f"finance.f{n:03}", 10) for n in range(101)]
        )
        big = uow.events.append([new_event(tenant, KEY, 1000) for _ in range(3)])
        uow.commit()
    assert [e.entity_key for e in written] == [f"finance.f{n:03}" for n in range(101)]
    assert [e.id for e in written] == sorted({e.id for e in written})
    with uow:
        everyone = uow.events.list()
        assert [e.id for e in everyone] == [e.id for e in written[:100]]
        assert everyone[0] == written[0]
        assert utc(everyone[0].occurred_at) == T0
        mine = uow.events.list(tenant_id=tenant, after=written[-1].id)
        assert [e.id for e in mine] == [e.id for e in big]
        assert uow.events.list(entity_key=KEY, limit=2) == big[:2]
        # A page stops before the event that would take it past max_bytes of payload, counted
        # by the database (as its JSON text); it always holds one event.
        size = uow.connection.execute(
            sa.select(sa.func.length(sa.cast(tables.events.c.payload, sa.Text))).where(
                tables.events.c.id == big[0].id
            )
        ).scalar_one()
        first = big[0].id - 1
        assert uow.events.list(after=first, max_bytes=1) == big[:1]
        assert uow.events.list(after=first, max_bytes=2 * size - 1) == big[:1]
        assert uow.events.list(after=first, max_bytes=2 * size) == big[:2]
        assert uow.events.list(after=first, max_bytes=3 * size - 1) == big[:2]
        assert uow.events.list(after=first, max_bytes=3 * size) == big


def test_what_a_run_saved_is_looked_up_in_that_run_only(uow, tenant):
    saved = stored_profile(tenant, KEY, T0)
    with uow:
        uow.profiles.add(saved)
        assert uow.profiles.saved_in_run(saved.run_id, [saved.entity_urn]) == {saved.entity_urn}
        assert uow.profiles.saved_in_run("another-run", [saved.entity_urn]) == set()


def test_a_token_is_dead_from_the_instant_it_expires():
    token = ApiToken(uuid.uuid4(), uuid.uuid4(), "ana", ("steward",), T0, T0, None)
    assert not token.live_at(T0)
    assert token.live_at(T0 - dt.timedelta(microseconds=1))


def test_a_live_entity_is_shown_with_its_tenant(engine, uow, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    with uow:
        shown = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, KEY).as_dict()
    assert shown["tenant_id"] == str(tenant) and shown["canonical_key"] == KEY


def test_entities_are_read_back_with_their_type_and_listed_by_key(engine, uow, tenant):
    for key in ("finance.revenue.zeta", "finance.revenue.alpha", "finance.revenue.mid"):
        approve_metadata(engine, tenant, key=key, binding=None)
    with uow:
        found = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, "finance.revenue.mid")
        listed = uow.entities.list(EntityType.GLOBAL_METADATA, tenant)
    assert found is not None and found.entity_type is EntityType.GLOBAL_METADATA
    assert [entity.canonical_key for entity in listed] == [
        "finance.revenue.alpha",
        "finance.revenue.mid",
        "finance.revenue.zeta",
    ]


def test_an_entitys_latest_incidents_are_its_active_one_and_its_last_resolved_one(uow, tenant):
    open_one = incident(tenant, IncidentStatus.OPEN, T0)
    with uow:
        uow.incidents.add(open_one)
        assert uow.incidents.latest(tenant, KEY) == (open_one, None)
        resolved = incident(tenant, IncidentStatus.RESOLVED, T0 - dt.timedelta(days=1))
        uow.incidents.add(resolved)
        assert uow.incidents.latest(tenant, KEY) == (open_one, resolved)


def test_incidents_are_listed_a_hundred_at_a_time_by_default(uow, tenant):
    with uow:
        for minute in range(101):
            opened = T0 + dt.timedelta(minutes=minute)
            uow.incidents.add(incident(tenant, IncidentStatus.RESOLVED, opened))
        listed = uow.incidents.list(tenant)
    assert len(listed) == 100
    assert listed[0].opened_at == T0 + dt.timedelta(minutes=100)


def test_the_unit_of_work_keeps_the_outbox_readers_cursors(uow):
    with uow:
        assert uow.cursors.get("a_reader") == ConsumerCursor("a_reader")
        uow.cursors.save(ConsumerCursor("a_reader", position=7, updated_at=T0))
        uow.commit()
    with uow:
        assert uow.cursors.get("a_reader").position == 7


def subscription(tenant: uuid.UUID, n: int, created_at: dt.datetime) -> Subscription:
    return Subscription(
        id=uuid.UUID(int=n),
        tenant_id=tenant,
        url=f"https://hooks.example.com/{n}",
        events=("quality.*",),
        min_tier=None,
        created_at=created_at,
        created_by="ana",
        secret="s3cret",
    )


def test_subscriptions_are_found_by_id_and_listed_oldest_first_then_by_id(uow, tenant):
    with uow:
        for n, at in [(3, T0 - dt.timedelta(days=1)), (2, T0), (1, T0)]:  # 1 and 2 tie
            uow.notifications.subscribe(subscription(tenant, n, at))
        uow.notifications.subscribe(subscription(uuid.uuid4(), 4, T0))
        uow.commit()
    with uow:
        listed = [s.id.int for s in uow.notifications.subscriptions(tenant)]
        found = uow.notifications.subscription(tenant, uuid.UUID(int=1))
        elsewhere = uow.notifications.subscription(tenant, uuid.UUID(int=4))
    assert listed == [3, 1, 2]
    assert found == subscription(tenant, 1, T0)
    assert elsewhere is None


def test_a_tenants_deliveries_are_listed_newest_first_then_by_id_a_page_at_a_time(uow, tenant):
    later = T0 + dt.timedelta(hours=1)
    with uow:
        for n, at in [(3, later), (2, T0), (1, T0)]:  # 1 and 2 tie
            uow.notifications.add_delivery(delivery(tenant, n, created_at=at))
        uow.notifications.add_delivery(delivery(tenant, 4, status=DeliveryStatus.DEAD))
        uow.notifications.add_delivery(delivery(uuid.uuid4(), 5, created_at=later))
        uow.commit()
    with uow:

        def page(**kwargs: Any) -> list[int]:
            return [d.id.int for d in uow.notifications.deliveries(tenant, **kwargs)]

        assert page(status=DeliveryStatus.PENDING) == [3, 1, 2]
        assert page(status=DeliveryStatus.PENDING, limit=2) == [3, 1]
        assert page(status=DeliveryStatus.PENDING, offset=1) == [1, 2]
        assert page() == [3, 1, 2, 4]


def test_deliveries_are_due_once_their_time_has_come_the_longest_waiting_first(uow, tenant):
    """Pending or failed deliveries whose next attempt is at or before now, by that time then
    by id, every tenant's; delivered and dead ones never."""
    hour = dt.timedelta(hours=1)
    with uow:
        for n, status, at in [
            (4, DeliveryStatus.PENDING, T0 - hour),
            (2, DeliveryStatus.FAILED, T0),
            (3, DeliveryStatus.PENDING, T0 - hour),
            (5, DeliveryStatus.PENDING, T0 + dt.timedelta(microseconds=1)),
            (6, DeliveryStatus.DELIVERED, T0 - 2 * hour),
            (7, DeliveryStatus.DEAD, T0 - 2 * hour),
        ]:
            owner = tenant if n % 2 else uuid.uuid4()
            uow.notifications.add_delivery(
                delivery(owner, n, status=status, attempts=n % 2, next_attempt_at=at)
            )
        uow.commit()
    with uow:
        assert [d.id.int for d in uow.notifications.due(T0, 10)] == [3, 4, 2]
        assert [d.id.int for d in uow.notifications.due(T0, 2)] == [3, 4]


def test_an_open_delivery_is_one_of_that_subscription_and_group_not_tried_yet(uow, tenant):
    """New events join the group's delivery only while it has not been tried; `exists` says
    whether the subscription has any delivery of the group."""
    mine, theirs = SUBSCRIPTION, uuid.UUID(int=200)
    untried = delivery(tenant, 1, subscription_id=mine, group_key="run:1")
    with uow:
        uow.notifications.add_delivery(untried)
        uow.notifications.add_delivery(
            delivery(tenant, 2, subscription_id=mine, group_key="run:2", attempts=1)
        )
        assert uow.notifications.open_delivery(mine, "run:1") == untried
        assert uow.notifications.open_delivery(theirs, "run:1") is None
        assert uow.notifications.open_delivery(mine, "run:2") is None  # tried, due again
        assert uow.notifications.exists(mine, "run:1")
        assert uow.notifications.exists(mine, "run:2")
        assert not uow.notifications.exists(theirs, "run:1")
        assert not uow.notifications.exists(mine, "run:3")


def test_ending_a_tokens_stale_sessions_ends_those_expired_or_idle_by_then_only(uow, tenant):
    hour = dt.timedelta(hours=1)
    token_id, other_id = uuid.UUID(int=1), uuid.UUID(int=2)
    with uow:
        uow.tokens.add(token_id, "hash-1", person(tenant, "ana", "steward"), T0 - 9 * hour, None)
        uow.tokens.add(other_id, "hash-2", person(tenant, "bo", "steward"), T0 - 9 * hour, None)
        [token, other] = sorted(uow.tokens.list(tenant), key=lambda t: t.id)
        for session, owner, expires_at in [
            ("old", token, T0 - hour),
            ("just", token, T0),
            ("new", token, T0 + hour),
            ("idle", token, T0 + hour),
            ("just_idle", token, T0 + hour),
            ("theirs", other, T0 - hour),
        ]:
            uow.console_sessions.add(session, owner, T0 - 2 * hour, expires_at)
        for session, seen in [
            ("old", T0 - hour),  # expired, not idle
            ("just", T0 - hour),
            ("new", T0 - hour),
            ("just_idle", T0 - 1.5 * hour),
        ]:
            uow.console_sessions.seen(session, seen, T0)
        uow.console_sessions.end_stale(token_id, T0, idle_since=T0 - 1.5 * hour)
        live = {
            session: getattr(
                (
                    uow.console_sessions.live_session(session, T0 - 2 * hour, T0 - 3 * hour)
                    or [None]
                )[0],
                "id",
                None,
            )
            for session in ("old", "just", "new", "idle", "just_idle", "theirs")
        }
    assert live == {
        "old": None,
        "just": None,
        "new": token_id,
        "idle": None,
        "just_idle": None,
        "theirs": other_id,
    }


def test_a_live_session_is_one_not_expired_nor_idle_with_a_live_token(uow, tenant):
    """`live_session` gives the token and the last-seen time; `seen` moves that time only when
    it is older than its bound; ending a token's sessions ends them all."""
    hour = dt.timedelta(hours=1)
    token_id = uuid.UUID(int=3)
    with uow:
        uow.tokens.add(token_id, "hash-3", person(tenant, "cy", "steward"), T0 - 9 * hour, None)
        [token] = uow.tokens.list(tenant)
        uow.console_sessions.add("s", token, T0 - hour, T0 + hour)
        found, seen = uow.console_sessions.live_session("s", T0, T0 - 2 * hour)
        assert (found.id, seen) == (token_id, T0 - hour)
        assert uow.console_sessions.live_session("s", T0, T0 - hour) is None  # idle since then
        assert uow.console_sessions.live_session("s", T0 + hour, T0 - 2 * hour) is None  # expired
        uow.console_sessions.seen("s", T0, unless_seen_since=T0 - hour)  # seen at T0 - hour: kept
        assert uow.console_sessions.live_session("s", T0, T0 - 2 * hour)[1] == T0 - hour
        uow.console_sessions.seen("s", T0, unless_seen_since=T0 - hour / 2)
        assert uow.console_sessions.live_session("s", T0, T0 - hour)[1] == T0
        uow.tokens.revoke(token_id, T0)
        assert uow.console_sessions.live_session("s", T0, T0 - hour) is None  # token revoked
        uow.console_sessions.end_for_token(token_id)
        count = uow.connection.execute(
            sa.select(sa.func.count()).select_from(tables.console_sessions)
        ).scalar()
    assert count == 0


def test_each_outbox_reader_keeps_its_own_cursor_from_zero(uow):
    """Reading a cursor creates nothing; locking one creates it at 0; each `save` moves only
    that reader's cursor, with every part of it."""
    later = T0 + dt.timedelta(hours=2)
    replaying = ConsumerCursor(
        "a_reader",
        position=9,
        generation=2,
        replay_id=40,
        replay_through=30,
        resume_after=35,
        attempts=3,
        failing_event_id=10,
        last_error="KeyError: 'reason'",
        updated_at=later,
    )
    with uow:
        assert uow.cursors.get("unread").position == 0
        assert uow.cursors.get("locked", for_update=True).position == 0
        uow.cursors.save(ConsumerCursor("a_reader", position=7, updated_at=T0))
        uow.cursors.save(ConsumerCursor("b_reader", position=3, updated_at=T0))
        uow.cursors.save(replaying)
        uow.commit()
    with uow:
        assert {c.consumer: c.position for c in uow.cursors.all()} == {
            "locked": 0,
            "a_reader": 9,
            "b_reader": 3,
        }
        assert uow.cursors.get("a_reader") == replaying
        assert uow.cursors.get("b_reader").updated_at == T0


def test_a_consumer_is_registered_once_and_removed_by_name(uow):
    with uow:
        assert uow.cursors.add(ConsumerCursor("feed", position=5, updated_at=T0))
        assert not uow.cursors.add(ConsumerCursor("feed", position=9, updated_at=T0))
        uow.commit()
    with uow:
        assert uow.cursors.get("feed").position == 5
        assert uow.cursors.remove("feed") and not uow.cursors.remove("feed")
        uow.commit()
    with uow:
        assert uow.cursors.all() == []


def outbox_event(event_id: int, tenant: uuid.UUID) -> Event:
    return Event(
        id=event_id,
        type="quality.incident.opened",
        tenant_id=tenant,
        entity_type=EntityType.GLOBAL_METADATA,
        entity_key=KEY,
        correlation_id=uuid.UUID(int=event_id),
        actor="profiler",
        occurred_at=T0,
        payload={"tier": "tier9"},
    )


def test_dead_letters_keep_their_event_one_per_consumer_and_event(uow, tenant):
    later = T0 + dt.timedelta(minutes=5)
    with uow:
        uow.dead_letters.add("notification_sensor", outbox_event(4, tenant), "ValueError", 5, T0)
        uow.dead_letters.add("approval_sensor", outbox_event(4, tenant), "KeyError", 5, T0)
        uow.dead_letters.add("approval_sensor", outbox_event(6, tenant), "KeyError", 5, T0)
        uow.commit()
    with uow:
        [first, second] = uow.dead_letters.list("approval_sensor")
        assert Event.from_json(first.event) == outbox_event(4, tenant)
        assert (first.event_id, first.error, first.attempts, first.status) == (
            4,
            "KeyError",
            5,
            DeadLetterStatus.DEAD,
        )
        uow.dead_letters.save(
            dataclasses.replace(first, status=DeadLetterStatus.RETRYING, resolved_by="ops")
        )
        uow.dead_letters.save(
            dataclasses.replace(
                second, status=DeadLetterStatus.DISCARDED, resolved_at=later, reason="old"
            )
        )
        uow.commit()
    with uow:
        assert uow.dead_letters.counts() == {"notification_sensor": 1}
        assert uow.dead_letters.counts(DeadLetterStatus.RETRYING) == {"approval_sensor": 1}
        assert [d.id for d in uow.dead_letters.list(status=DeadLetterStatus.DISCARDED)] == [
            second.id
        ]
        assert len(uow.dead_letters.list(limit=2)) == 2
        assert [d.id for d in uow.dead_letters.list(offset=2)] == [second.id]
        # The same event failing again (a retry, a replay) is dead again, with the new error.
        uow.dead_letters.add("approval_sensor", outbox_event(4, tenant), "again", 6, later)
        uow.commit()
    with uow:
        again = uow.dead_letters.get(first.id, for_update=True)
        assert (again.status, again.error, again.attempts, again.failed_at) == (
            DeadLetterStatus.DEAD,
            "again",
            6,
            later,
        )
        assert (again.resolved_by, uow.dead_letters.get(999)) == (None, None)


def test_the_head_and_when_the_first_unread_event_happened(uow, tenant):
    with uow:
        assert uow.events.head() == 0 and uow.events.occurred_after(0) is None
        fresh = {k: v for k, v in dataclasses.asdict(outbox_event(0, tenant)).items() if k != "id"}
        written = uow.events.append([NewEvent(**fresh) for _ in range(3)])
        uow.commit()
    with uow:
        assert uow.events.head() == written[-1].id
        assert uow.events.occurred_after(written[0].id) == T0
        assert uow.events.occurred_after(written[-1].id) is None
        assert [e.id for e in uow.events.list(after=0, through=written[1].id)] == [
            e.id for e in written[:2]
        ]


A, B = uuid.UUID(int=1), uuid.UUID(int=2)


def test_tenant_names_are_set_per_tenant_read_by_id_and_taken_by_another(uow):
    with uow:
        uow.lineage.set_tenant_name(A, "acme", "ana", T0)
        uow.lineage.set_tenant_name(B, "beta", "bo", T0)
        uow.lineage.set_tenant_name(A, "acme_eu", "ana", T0)  # renames A only
        uow.commit()
    with uow:
        assert uow.lineage.tenant_names() == {A: "acme_eu", B: "beta"}
        assert uow.lineage.tenant_names([A]) == {A: "acme_eu"}
        assert uow.lineage.tenant_names([]) == {}
        assert uow.lineage.name_taken("beta", A) is True
        assert uow.lineage.name_taken("acme_eu", A) is False  # its own name
        assert uow.lineage.name_taken("gamma", A) is False


def test_the_lineage_graph_reads_every_tenants_live_bound_fields_and_active_kpis(uow):
    """By tenant, then key; deprecated or unbound fields and draft or deprecated KPIs are left
    out."""
    field, kpi = EntityType.GLOBAL_METADATA, EntityType.KPI
    with uow:
        for entity_type in (field, kpi):
            for tenant, key in [(B, "finance.a"), (A, "finance.b"), (A, "finance.a")]:
                add_entity(uow, entity_type, tenant, key)
            add_entity(uow, entity_type, A, "finance.c", EntityStatus.DEPRECATED)
        add_entity(uow, field, A, "finance.d", binding=None)
        add_entity(uow, kpi, A, "finance.e", EntityStatus.DRAFT)
        uow.commit()
    with uow:
        fields = uow.lineage.bound_fields()
        kpis = uow.lineage.active_kpis()
        b_kpis = uow.lineage.active_kpis(B)
    listed = [(A, "finance.a"), (A, "finance.b"), (B, "finance.a")]
    assert [(e.tenant_id, e.canonical_key) for e in fields] == listed
    assert [(e.tenant_id, e.canonical_key) for e in kpis] == listed
    assert [(e.tenant_id, e.canonical_key) for e in b_kpis] == [(B, "finance.a")]
    assert {e.entity_type for e in fields} == {field}
    assert {e.entity_type for e in kpis} == {kpi}


def test_the_latest_profile_of_each_asked_field_is_its_own_tenants_newest(uow):
    hour = dt.timedelta(hours=1)
    with uow:
        for tenant, key, at, score in [
            (A, "finance.k1", T0, 80.0),
            (A, "finance.k1", T0 + hour, 85.0),
            (B, "finance.k1", T0 + 2 * hour, 60.0),
            (A, "finance.k2", T0, None),
            (A, "finance.k3", T0, 10.0),
        ]:
            uow.profiles.add(stored_profile(tenant, key, at, score))
        uow.commit()
    with uow:
        latest = uow.lineage.latest_profiles(A, ["finance.k1", "finance.k2", "finance.none"])
    assert latest == {"finance.k1": (85.0, T0 + hour), "finance.k2": (None, T0)}


def trust(tenant: uuid.UUID, key: str, score: float) -> TrustState:
    inputs = [{"canonical_key": "finance.a", "score": score}]
    return TrustState(tenant, key, score, "finance.a", inputs, T0)


def test_a_kpis_trust_state_is_saved_and_read_per_tenant_and_key(uow):
    a1, a2, b1 = (
        trust(A, "finance.k1", 80.0),
        trust(A, "finance.k2", 70.0),
        trust(B, "finance.k1", 60.0),
    )
    with uow:
        for state in (a1, a2, b1):
            uow.lineage.save_trust(state, exists=False)
        a1 = dataclasses.replace(a1, trust_score=40.0, impacted=True, below_streak=2)
        uow.lineage.save_trust(a1, exists=True)
        uow.commit()
    with uow:
        assert uow.lineage.trust_states(A, ["finance.k1", "finance.k2"]) == {
            "finance.k1": a1,
            "finance.k2": a2,
        }
        assert uow.lineage.trust_states(A, ["finance.k1"]) == {"finance.k1": a1}
        assert uow.lineage.trust_states(B, ["finance.k1", "finance.k2"]) == {"finance.k1": b1}


def _rows_read(plan: dict[str, Any]) -> int:
    """Rows every scan of an EXPLAIN (ANALYZE, FORMAT JSON) plan read, summed over its nodes."""
    own = plan["Actual Rows"] * plan["Actual Loops"] if "Scan" in plan["Node Type"] else 0
    return own + sum(_rows_read(child) for child in plan.get("Plans", []))


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("status", [ApprovalStatus.APPROVED, None], ids=["by-status", "all"])
def test_an_inbox_page_reads_the_page_not_the_history(engine, status):
    """A tenant's inbox grows without end: a page of 20 must come from an index in order, not
    from sorting every request the tenant ever made (before migration 0008, the listing without
    a status filter read all 2,000 here)."""
    tenant = uuid.uuid4()
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO mdm_approval (id, tenant_id, entity_type, entity_key, tier, lane,"
            " payload, status, requested_by, required_role, requested_at)"
            " SELECT gen_random_uuid(), %(tenant)s, 'global_metadata', 'k' || g, 'tier3',"
            " 'governed', '{}'::json, 'approved', 'alice', 'metadata_steward',"
            " now() - g * interval '1 second' FROM generate_series(1, 2000) AS g",
            {"tenant": tenant},
        )
        connection.exec_driver_sql("ANALYZE mdm_approval")
    statements: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:
        statements.append((statement, parameters))

    with engine.connect() as connection:
        sa.event.listen(connection, "before_cursor_execute", capture)
        page = ApprovalRepository(connection).list(tenant, ApprovalFilter(status=status, limit=20))
        sa.event.remove(connection, "before_cursor_execute", capture)
        [(statement, parameters)] = statements
        [[[plan]]] = connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
        ).all()
    assert [listing.summary["entity_key"] for listing in page] == [f"k{g}" for g in range(1, 21)]
    assert _rows_read(plan["Plan"]) <= 21


def test_the_catalog_version_moves_with_every_change_the_graph_is_built_from(engine, tenant):
    def version():
        with UnitOfWork(engine) as uow:
            return uow.lineage.version()

    empty = version()
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    bound = version()
    assert bound != empty and version() == bound  # a read changes nothing
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING, label="Renamed")
    relabelled = version()
    assert relabelled != bound
    with UnitOfWork(engine) as uow:
        uow.lineage.set_tenant_name(tenant, "acme", "ana", T0)
        uow.commit()
    named = version()
    assert named != relabelled
    with UnitOfWork(engine) as uow:
        uow.lineage.set_tenant_name(tenant, "acme_eu", "ana", T0)
        uow.commit()
    assert version() != named
