"""Quality incidents through the store (`service_layer.incidents`, `IncidentRepository`): opened
and resolved in the transaction that records a profile outcome, listed, acknowledged and
resolved by the people the tenant's policy names. The rules themselves are in
tests/unit/test_incident_rules.py."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from demo import warehouse as demo_warehouse
from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from mdstudio_core.domain.incidents import Incident, IncidentStatus
from mdstudio_core.domain.model import Lane, Tier
from mdstudio_core.service_layer import incidents
from mdstudio_core.service_layer.profiling import ProfileTarget, record_failures, run_profiles
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import (
    DEMO_BINDING,
    DEMO_SCORE,
    KERNEL_OWNER,
    STEWARD,
    approve_metadata,
    person,
)

KEY = "finance.revenue.gross_amount"
TIER2_KEY = "finance.revenue.net_amount"
TIER3_KEY = "finance.revenue.notes"
ADMIN = "tenant_admin"


@pytest.fixture
def demo_url(tmp_path) -> str:
    return demo_warehouse.build(tmp_path / "warehouse.db")


@pytest.fixture
def catalog(engine, tenant):
    """Three entities on the demo table, one per tier."""
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key=TIER2_KEY, tier="tier2", binding=DEMO_BINDING)
    approve_metadata(engine, tenant, key=TIER3_KEY, tier="tier3", binding=DEMO_BINDING)
    return engine


def fail(engine, tenant, key=KEY, tier=Tier.TIER1, run_id="run-1", settings=None) -> None:
    record_failures(
        UnitOfWork(engine), settings or Settings.from_env({}), tenant, [(key, tier)], run_id, "x"
    )


def incident_events(engine) -> list[tuple[str, str, dict]]:
    column = tables.events.c
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(column.type, column.entity_key, column.payload)
            .where(column.type.like("quality.incident.%"))
            .order_by(column.id)
        )
        return [tuple(row) for row in rows]


def listed(engine, tenant, **filters):
    return incidents.list_incidents(UnitOfWork(engine), person(tenant, "ana"), **filters)


def test_a_failed_profile_opens_an_incident_once_and_a_recovery_resolves_it(
    catalog, uow, tenant, demo_url
):
    fail(catalog, tenant, run_id="run-1")
    fail(catalog, tenant, run_id="run-2")  # still failing: the same incident, no new event
    [opened] = listed(catalog, tenant)
    assert (opened.canonical_key, opened.tier, opened.status) == (KEY, Tier.TIER1, "open")
    assert opened.last_score is None and opened.opening_profile_id is None
    [(event_type, key, payload)] = incident_events(catalog)
    assert (event_type, key, payload["incident_id"]) == (
        "quality.incident.opened",
        KEY,
        str(opened.id),
    )
    assert payload["run_id"] == "run-1"

    settings = Settings.from_env({"MDSTUDIO_SOURCE_DEMO_URL": demo_url})
    run_profiles(uow, settings, tenant, [ProfileTarget(KEY)], run_id="run-3")

    [resolved] = listed(catalog, tenant)
    assert (resolved.id, resolved.status, resolved.last_score) == (
        opened.id,
        "resolved",
        DEMO_SCORE,
    )
    assert (resolved.resolved_by, resolved.resolution) == (
        "mdstudio",
        f"recovered: score {DEMO_SCORE:g} reached the tier1 minimum 80 plus the margin of 2",
    )
    assert [event[0] for event in incident_events(catalog)] == [
        "quality.incident.opened",
        "quality.incident.resolved",
    ]

    fail(catalog, tenant, run_id="run-4")  # a new incident remembers the last one
    [second, _] = listed(catalog, tenant)
    assert second.status == "open" and second.previous_incident_id == opened.id
    owner = person(tenant, "olga", KERNEL_OWNER)
    incidents.resolve(uow, owner, second.id, "known outage", Settings())
    fail(catalog, tenant, run_id="run-5")  # ... the one resolved last
    [third, *_] = listed(catalog, tenant)
    assert third.id not in (opened.id, second.id) and third.previous_incident_id == second.id


def test_a_profile_below_the_minimum_opens_an_incident_with_its_score(
    catalog, uow, tenant, demo_url
):
    strict = Settings.from_env(
        {"MDSTUDIO_SOURCE_DEMO_URL": demo_url, "MDSTUDIO_TIER1_MIN_SCORE": "95"}
    )
    outcome = run_profiles(uow, strict, tenant, [ProfileTarget(KEY)], run_id="r")
    [saved] = outcome.profiles
    [opened] = listed(catalog, tenant)
    assert (opened.last_score, opened.opening_profile_id) == (DEMO_SCORE, saved.profile_id)
    [(_, _, payload)] = incident_events(catalog)
    assert (payload["threshold"], payload["quality_score"]) == (95.0, DEMO_SCORE)


def test_the_streak_length_comes_from_the_settings(catalog, tenant):
    patient = Settings.from_env({"MDSTUDIO_INCIDENT_OPEN_AFTER": "2"})
    fail(catalog, tenant, run_id="run-1", settings=patient)
    assert listed(catalog, tenant) == []
    fail(catalog, tenant, run_id="run-2", settings=patient)
    assert len(listed(catalog, tenant)) == 1


def test_tier3_failures_open_no_incident(catalog, tenant):
    fail(catalog, tenant, key=TIER3_KEY, tier=Tier.TIER3)
    assert listed(catalog, tenant) == [] and incident_events(catalog) == []


def test_incidents_are_listed_newest_first_and_filtered(catalog, uow, tenant):
    fail(catalog, tenant, key=KEY, tier=Tier.TIER1)
    fail(catalog, tenant, key=TIER2_KEY, tier=Tier.TIER2)
    tier2, tier1 = listed(catalog, tenant)
    assert (tier2.canonical_key, tier1.canonical_key) == (TIER2_KEY, KEY)
    assert tier2.opened_at >= tier1.opened_at
    incidents.acknowledge(uow, person(tenant, "kim", ADMIN), tier1.id, None, Settings())

    assert listed(catalog, tenant, tier=Tier.TIER1) == [listed(catalog, tenant)[1]]
    assert [i.id for i in listed(catalog, tenant, entity_key=TIER2_KEY)] == [tier2.id]
    assert [i.id for i in listed(catalog, tenant, status=IncidentStatus.OPEN)] == [tier2.id]
    acknowledged = listed(catalog, tenant, status=IncidentStatus.ACKNOWLEDGED)
    assert [i.id for i in acknowledged] == [tier1.id]
    assert listed(catalog, tenant, status=IncidentStatus.RESOLVED) == []
    assert [i.id for i in listed(catalog, tenant, limit=1)] == [tier2.id]
    assert [i.id for i in listed(catalog, tenant, limit=1, offset=1)] == [tier1.id]
    assert listed(catalog, uuid.uuid4()) == []
    with pytest.raises(InvalidInput) as caught:
        listed(catalog, tenant, limit=0)
    assert caught.value.field == "limit"
    with pytest.raises(InvalidInput) as caught:
        listed(catalog, tenant, offset=-1)
    assert caught.value.field == "offset"


def test_the_deciding_role_acknowledges_then_resolves_with_a_reason(catalog, uow, tenant):
    fail(catalog, tenant)
    [opened] = listed(catalog, tenant)
    owner = person(tenant, "olga", KERNEL_OWNER)

    acknowledged = incidents.acknowledge(uow, owner, str(opened.id), "  on it ", Settings())
    assert (acknowledged.status, acknowledged.acknowledged_by) == ("acknowledged", "olga")
    assert incidents.get_incident(uow, owner, opened.id) == acknowledged
    with pytest.raises(Conflict):
        incidents.acknowledge(uow, owner, opened.id, None, Settings())

    resolved = incidents.resolve(uow, owner, opened.id, "fixed upstream", Settings())
    assert (resolved.status, resolved.resolved_by, resolved.resolution) == (
        "resolved",
        "olga",
        "fixed upstream",
    )
    stored = incidents.get_incident(uow, owner, str(opened.id))
    assert stored == resolved and stored.resolved_at is not None
    assert stored.resolved_at.replace(tzinfo=dt.UTC) <= dt.datetime.now(dt.UTC)
    events = incident_events(catalog)
    assert [(e[0], e[2]["actor"]) for e in events] == [
        ("quality.incident.opened", "mdstudio"),
        ("quality.incident.acknowledged", "olga"),
        ("quality.incident.resolved", "olga"),
    ]
    assert events[1][2]["note"] == "on it"
    assert events[2][2]["reason"] == "fixed upstream"
    with pytest.raises(Conflict):
        incidents.resolve(uow, owner, opened.id, "again", Settings())


def test_who_handles_an_incident_follows_the_tenants_policy(catalog, uow, tenant):
    fail(catalog, tenant)
    [opened] = listed(catalog, tenant)
    steward = person(tenant, "sam", STEWARD)
    with pytest.raises(Forbidden):
        incidents.acknowledge(uow, steward, opened.id, None, Settings())
    with uow:
        uow.policies.set(
            tenant, Lane.KERNEL, "tier1", "quality_lead", "root", dt.datetime.now(dt.UTC)
        )
        uow.commit()
    owner = person(tenant, "olga", KERNEL_OWNER)
    with pytest.raises(Forbidden, match="quality_lead"):
        incidents.resolve(uow, owner, opened.id, "no", Settings())
    lead = person(tenant, "lee", "quality_lead")
    assert incidents.resolve(uow, lead, opened.id, "ok", Settings()).status == "resolved"


def test_refused_handling_changes_nothing(catalog, uow, tenant):
    fail(catalog, tenant)
    [opened] = listed(catalog, tenant)
    owner = person(tenant, "olga", KERNEL_OWNER)
    before = incident_events(catalog)
    with pytest.raises(InvalidInput) as caught:
        incidents.resolve(uow, owner, opened.id, "  ", Settings())
    assert caught.value.field == "reason"
    with pytest.raises(InvalidInput) as caught:
        incidents.acknowledge(uow, owner, opened.id, "x" * 10_001, Settings())
    assert caught.value.field == "note"
    assert incident_events(catalog) == before
    assert listed(catalog, tenant) == [opened]


def test_an_unknown_or_foreign_incident_is_not_found(catalog, uow, tenant):
    fail(catalog, tenant)
    [opened] = listed(catalog, tenant)
    stranger = person(uuid.uuid4(), "eve", ADMIN)
    for call in (
        lambda: incidents.get_incident(uow, stranger, opened.id),
        lambda: incidents.acknowledge(uow, stranger, opened.id, None, Settings()),
        lambda: incidents.resolve(uow, stranger, opened.id, "r", Settings()),
    ):
        with pytest.raises(NotFound, match=str(opened.id)):
            call()
    assert listed(catalog, tenant) == [opened]


@pytest.mark.parametrize("bad", ["not-a-uuid", "", "1234"])
def test_a_malformed_incident_id_is_invalid_input_naming_the_field(catalog, uow, tenant, bad):
    owner = person(tenant, "olga", KERNEL_OWNER)
    for call in (
        lambda: incidents.get_incident(uow, owner, bad),
        lambda: incidents.acknowledge(uow, owner, bad, None, Settings()),
        lambda: incidents.resolve(uow, owner, bad, "r", Settings()),
    ):
        with pytest.raises(InvalidInput) as caught:
            call()
        assert caught.value.field == "incident_id"


def test_an_entity_is_judged_on_its_own_outcomes_in_its_own_tenant(catalog, uow, tenant, demo_url):
    """Two failures in a row open an incident here; a failure of another entity, or of the same
    key in another tenant, is not one of them, and a passing profile breaks the streak."""
    patient = Settings.from_env(
        {"MDSTUDIO_INCIDENT_OPEN_AFTER": "2", "MDSTUDIO_SOURCE_DEMO_URL": demo_url}
    )
    other_tenant = uuid.uuid4()
    approve_metadata(catalog, other_tenant, key=KEY, binding=DEMO_BINDING)
    fail(catalog, other_tenant, run_id="run-b", settings=patient)
    fail(catalog, tenant, key=TIER2_KEY, tier=Tier.TIER2, run_id="run-1", settings=patient)
    fail(catalog, tenant, key=KEY, run_id="run-2", settings=patient)
    assert listed(catalog, tenant) == []
    run_profiles(uow, patient, tenant, [ProfileTarget(KEY)], run_id="run-3")
    fail(catalog, tenant, key=KEY, run_id="run-4", settings=patient)
    assert listed(catalog, tenant) == []
    fail(catalog, tenant, key=KEY, run_id="run-5", settings=patient)
    [opened] = listed(catalog, tenant)
    assert opened.canonical_key == KEY


def test_an_incident_is_fetched_by_its_id_and_points_to_the_latest_resolved_one(uow, tenant):
    """Written through the repository with chosen ids and times, so that neither the ids' order
    nor another entity's incidents can stand in for the right one."""
    t0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)

    def resolved(n: int, key: str, days: int) -> Incident:
        return Incident(
            id=uuid.UUID(int=n),
            tenant_id=tenant,
            canonical_key=key,
            tier=Tier.TIER1,
            status=IncidentStatus.RESOLVED,
            opened_at=t0,
            opening_profile_id=None,
            last_score=None,
            resolved_by="mdstudio",
            resolved_at=t0 + dt.timedelta(days=days),
            resolution="ok",
        )

    with uow:
        uow.incidents.add(resolved(3, TIER2_KEY, days=3))  # another entity's, resolved last
        uow.incidents.add(resolved(2, KEY, days=2))  # this entity's, resolved last
        uow.incidents.add(resolved(1, KEY, days=1))
        uow.commit()
    with uow:
        active, previous = uow.incidents.latest(tenant, KEY)
        assert (active, previous.id) == (None, uuid.UUID(int=2))
        for n in (1, 2, 3):
            assert uow.incidents.get(tenant, uuid.UUID(int=n)).id == uuid.UUID(int=n)
        assert uow.incidents.get(uuid.uuid4(), uuid.UUID(int=1)) is None
        # Listed newest first; incidents opened at the same time, by id; all by default.
        assert [i.id for i in uow.incidents.list(tenant)] == [uuid.UUID(int=n) for n in (1, 2, 3)]


def test_handling_is_refused_with_the_reason(catalog, uow, tenant):
    fail(catalog, tenant)
    [opened] = listed(catalog, tenant)
    steward = person(tenant, "sam", STEWARD)
    with pytest.raises(Forbidden) as caught:
        incidents.acknowledge(uow, steward, opened.id, None, Settings())
    assert str(caught.value) == (
        f"role {KERNEL_OWNER} (the role that decides this tier) or tenant_admin is required to "
        "handle this incident"
    )
    owner = person(tenant, "olga", KERNEL_OWNER)
    with pytest.raises(InvalidInput) as caught:
        opened.resolve(
            owner, KERNEL_OWNER, "", dt.datetime.now(dt.UTC), Settings().quality_thresholds
        )
    assert caught.value.reason == "a reason is required to resolve an incident"
    with pytest.raises(InvalidInput) as caught:
        incidents.get_incident(uow, owner, "nope")
    assert caught.value.reason == "not a valid incident id (a UUID)"
