"""Repository contracts the services lean on, checked directly on both backends: the entity
compare-and-set, batch lookups returning only what was asked, profile history's page and order,
a run saving an entity once, and token listing order. (Surviving mutants of `make mutation`
showed that no test told these apart from their broken variants.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.domain.events import NewEvent, validate_event
from mdstudio_core.domain.incidents import Incident, IncidentStatus
from mdstudio_core.domain.model import ApiToken, EntityStatus, EntityType, Tier
from mdstudio_core.service_layer import approvals
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.factories import (
    DEMO_BINDING,
    approve_metadata,
    metadata_request,
    person,
    stored_profile,
)

KEY = "finance.revenue.gross_amount"
T0 = dt.datetime(2026, 2, 1, 8, tzinfo=dt.UTC)


def utc(at: dt.datetime) -> dt.datetime:
    """SQLite gives datetimes back naive (in UTC)."""
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def test_an_entity_update_is_a_compare_and_set_on_its_version(engine, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.other", binding=DEMO_BINDING)
    with UnitOfWork(engine) as uow:
        live = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, KEY)
        other = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, "finance.other")
    assert live.version == 1
    state = {**live.state, "label": "Gross amount (EUR)"}

    with UnitOfWork(engine) as uow:
        stale = uow.entities.update(EntityType.GLOBAL_METADATA, tenant, KEY, 2, state, "eve", T0)
        done = uow.entities.update(EntityType.GLOBAL_METADATA, tenant, KEY, 1, state, "dan", T0)
        again = uow.entities.update(EntityType.GLOBAL_METADATA, tenant, KEY, 1, state, "eve", T0)
        uow.commit()
    assert (stale, done, again) == (False, True, False)

    with UnitOfWork(engine) as uow:
        updated = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, KEY)
        untouched = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, "finance.other")
    assert (updated.version, updated.updated_by, utc(updated.updated_at)) == (2, "dan", T0)
    assert updated.state["label"] == "Gross amount (EUR)"
    assert untouched == other


def test_a_batch_lookup_returns_exactly_the_entities_asked_for(engine, tenant):
    other_tenant = uuid.uuid4()
    for owner in (tenant, other_tenant):
        for key in ("finance.a", "finance.b", "finance.c"):
            approve_metadata(engine, owner, key=key, binding=DEMO_BINDING)
    asked = [(tenant, "finance.a"), (tenant, "finance.c"), (other_tenant, "finance.b")]
    with UnitOfWork(engine) as uow:
        found = uow.entities.get_many(EntityType.GLOBAL_METADATA, [*asked, (tenant, "nope")])
    assert sorted(found, key=str) == sorted(asked, key=str)
    for (owner, key), entity in found.items():
        assert (entity.tenant_id, entity.canonical_key) == (owner, key)
        assert entity.entity_type is EntityType.GLOBAL_METADATA
        assert entity.binding is not None and entity.binding.table == "orders"


def test_a_scheduled_pass_reads_active_bound_entities_of_one_tier(engine, tenant):
    approve_metadata(engine, tenant, key="finance.t1", binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.a_t1", binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.t2", tier="tier2", binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key="finance.unbound", binding=None)
    approve_metadata(engine, tenant, key="finance.draft", binding=DEMO_BINDING, lane="draft")
    with UnitOfWork(engine) as uow:
        [first, bound] = uow.entities.bound(Tier.TIER1)  # by key within a tenant
        [tier2] = uow.entities.bound(Tier.TIER2)
    assert first.canonical_key == "finance.a_t1"
    assert (bound.canonical_key, bound.entity_type, bound.status) == (
        "finance.t1",
        EntityType.GLOBAL_METADATA,
        EntityStatus.ACTIVE,
    )
    assert tier2.canonical_key == "finance.t2"


def test_a_run_saves_an_entity_once_and_other_entities_of_the_run_still_save(engine, tenant):
    first = stored_profile(tenant, KEY, T0)
    later = stored_profile(tenant, KEY, T0 + dt.timedelta(minutes=1))
    retry = dataclasses.replace(later, run_id=first.run_id)
    sibling = dataclasses.replace(stored_profile(tenant, "finance.other", T0), run_id=first.run_id)
    with UnitOfWork(engine) as uow:
        assert uow.profiles.add(first) is True
        assert uow.profiles.add(retry) is False
        assert uow.profiles.add(sibling) is True
        assert uow.profiles.saved_in_run(first.run_id, [first.entity_urn, "urn:none"]) == {
            first.entity_urn
        }
        uow.commit()
    with UnitOfWork(engine) as uow:
        assert [p.id for p in uow.profiles.history(tenant, KEY)] == [first.id]


def test_profile_history_is_newest_first_twenty_by_default(engine, tenant):
    profiles = [stored_profile(tenant, KEY, T0 + dt.timedelta(hours=h)) for h in range(22)]
    tied = [stored_profile(tenant, KEY, T0 + dt.timedelta(hours=30)) for _ in range(3)]
    with UnitOfWork(engine) as uow:
        for profile in [*profiles, *tied]:
            uow.profiles.add(profile)
        uow.commit()
    with UnitOfWork(engine) as uow:
        history = uow.profiles.history(tenant, KEY)
        short = uow.profiles.history(tenant, KEY, limit=4)
    assert len(history) == 20
    assert [p.id for p in history[:3]] == sorted(p.id for p in tied)  # ties: by id
    assert [p.id for p in history[3:]] == [p.id for p in reversed(profiles)][:17]
    assert [p.id for p in short] == [p.id for p in history[:4]]


def test_tokens_are_listed_oldest_first_then_by_id(engine, tenant):
    ids = [uuid.UUID(int=n) for n in (3, 2, 1)]
    with UnitOfWork(engine) as uow:
        for n, token_id in enumerate(ids):
            at = T0 if n else T0 - dt.timedelta(days=1)  # the first is the oldest
            uow.tokens.add(token_id, f"hash-{n}", person(tenant, "ana", "steward"), at, None)
        uow.tokens.add(uuid.uuid4(), "hash-x", person(uuid.uuid4(), "bo"), T0, None)
        uow.commit()
    with UnitOfWork(engine) as uow:
        listed = [token.id for token in uow.tokens.list(tenant)]
        everyone = uow.tokens.list()
    assert listed == [ids[0], uuid.UUID(int=1), uuid.UUID(int=2)]
    assert len(everyone) == 4


def test_a_decision_is_recorded_only_while_the_request_is_pending(engine, tenant):
    alice = person(tenant, "alice")
    pending = approvals.submit(UnitOfWork(engine), alice, metadata_request())
    bob = person(tenant, "bob", pending.required_role)
    now = dt.datetime.now(dt.UTC)
    rejected, _ = pending.reject(bob, now, "no")
    approved, _ = pending.approve(bob, None, now, None)
    with UnitOfWork(engine) as uow:
        assert uow.approvals.record_decision(rejected) is True
        assert uow.approvals.record_decision(approved) is False
        uow.commit()
    stored = approvals.get_approval(UnitOfWork(engine), alice, pending.id)
    assert (stored.status, stored.decided_by, stored.decision_reason) == ("rejected", "bob", "no")
    assert utc(stored.decided_at) == now


def new_event(tenant: uuid.UUID, key: str, size: int) -> NewEvent:
    """A `metadata.profile.failed` event whose payload is about `size` bytes of JSON."""
    payload = {"canonical_key": key, "tier": "tier1", "run_id": None, "error": "x" * size}
    return NewEvent(
        type="metadata.profile.failed",
        tenant_id=tenant,
        entity_type=EntityType.GLOBAL_METADATA,
        entity_key=key,
        correlation_id=uuid.uuid4(),
        actor="mdstudio",
        occurred_at=T0,
        payload=validate_event("metadata.profile.failed", payload),
    )


def test_the_outbox_appends_in_order_and_pages_by_id_count_and_bytes(engine, tenant):
    other = uuid.uuid4()
    with UnitOfWork(engine) as uow:
        written = uow.events.append(
            [new_event(tenant if n % 2 else other, f"finance.f{n:03}", 10) for n in range(101)]
        )
        big = uow.events.append([new_event(tenant, KEY, 1000) for _ in range(3)])
        uow.commit()
    assert [e.entity_key for e in written] == [f"finance.f{n:03}" for n in range(101)]
    assert [e.id for e in written] == sorted({e.id for e in written})
    with UnitOfWork(engine) as uow:
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


def test_what_a_run_saved_is_looked_up_in_that_run_only(engine, tenant):
    saved = stored_profile(tenant, KEY, T0)
    with UnitOfWork(engine) as uow:
        uow.profiles.add(saved)
        assert uow.profiles.saved_in_run(saved.run_id, [saved.entity_urn]) == {saved.entity_urn}
        assert uow.profiles.saved_in_run("another-run", [saved.entity_urn]) == set()


def test_a_token_is_dead_from_the_instant_it_expires():
    token = ApiToken(uuid.uuid4(), uuid.uuid4(), "ana", ("steward",), T0, T0, None)
    assert not token.live_at(T0)
    assert token.live_at(T0 - dt.timedelta(microseconds=1))


def test_a_live_entity_is_shown_with_its_tenant(engine, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    with UnitOfWork(engine) as uow:
        shown = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, KEY).as_dict()
    assert shown["tenant_id"] == str(tenant) and shown["canonical_key"] == KEY


def test_entities_are_read_back_with_their_type_and_listed_by_key(engine, tenant):
    for key in ("finance.revenue.zeta", "finance.revenue.alpha", "finance.revenue.mid"):
        approve_metadata(engine, tenant, key=key, binding=None)
    with UnitOfWork(engine) as uow:
        found = uow.entities.get(EntityType.GLOBAL_METADATA, tenant, "finance.revenue.mid")
        listed = uow.entities.list(EntityType.GLOBAL_METADATA, tenant)
    assert found is not None and found.entity_type is EntityType.GLOBAL_METADATA
    assert [entity.canonical_key for entity in listed] == [
        "finance.revenue.alpha",
        "finance.revenue.mid",
        "finance.revenue.zeta",
    ]


def incident(tenant: uuid.UUID, status: IncidentStatus, opened_at: dt.datetime) -> Incident:
    resolved = status is IncidentStatus.RESOLVED
    return Incident(
        id=uuid.uuid4(),
        tenant_id=tenant,
        canonical_key=KEY,
        tier=Tier.TIER1,
        status=status,
        opened_at=opened_at,
        opening_profile_id=None,
        last_score=50.0,
        resolved_by="bob" if resolved else None,
        resolved_at=opened_at + dt.timedelta(hours=1) if resolved else None,
    )


def test_an_entitys_latest_incidents_are_its_active_one_and_its_last_resolved_one(engine, tenant):
    open_one = incident(tenant, IncidentStatus.OPEN, T0)
    with UnitOfWork(engine) as uow:
        uow.incidents.add(open_one)
        assert uow.incidents.latest(tenant, KEY) == (open_one, None)
        resolved = incident(tenant, IncidentStatus.RESOLVED, T0 - dt.timedelta(days=1))
        uow.incidents.add(resolved)
        assert uow.incidents.latest(tenant, KEY) == (open_one, resolved)


def test_incidents_are_listed_a_hundred_at_a_time_by_default(engine, tenant):
    with UnitOfWork(engine) as uow:
        for minute in range(101):
            opened = T0 + dt.timedelta(minutes=minute)
            uow.incidents.add(incident(tenant, IncidentStatus.RESOLVED, opened))
        listed = uow.incidents.list(tenant)
    assert len(listed) == 100
    assert listed[0].opened_at == T0 + dt.timedelta(minutes=100)


def test_the_unit_of_work_keeps_the_outbox_readers_cursors(engine):
    with UnitOfWork(engine) as uow:
        assert uow.cursors.get("a_reader") == 0
        uow.cursors.set("a_reader", 7, T0)
        uow.commit()
    with UnitOfWork(engine) as uow:
        assert uow.cursors.get("a_reader") == 7
