"""Approval deadlines: the settings (per tier beats the default, fractions allowed), one
`approval.overdue` event per request past its deadline (never twice, never for a decided
request), notifications that can subscribe to it, and `mdstudio_approvals_overdue` in
`/metrics`; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain.deadlines import ApprovalDeadlines
from mdstudio_core.domain.errors import ConfigurationError
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.model import EntityType, Tier
from mdstudio_core.domain.notifications import Subscription
from mdstudio_core.service_layer import approvals, change_sets, deadlines
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.http.test_metrics import samples, scraped, value
from tests.support.factories import (
    SETTINGS,
    STEWARD,
    event_types,
    glossary_request,
    metadata_request,
    person,
    stored_event,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_a_tier_deadline_beats_the_default_and_fractions_are_hours():
    settings = Settings.from_env(
        {"MDSTUDIO_APPROVAL_SLA_HOURS": "24", "MDSTUDIO_TIER1_APPROVAL_SLA_HOURS": "0.5"}
    )
    assert settings.approval_deadlines.slas == {
        Tier.TIER1: dt.timedelta(minutes=30),
        Tier.TIER2: dt.timedelta(hours=24),
        Tier.TIER3: dt.timedelta(hours=24),
    }
    only_tier2 = Settings.from_env({"MDSTUDIO_TIER2_APPROVAL_SLA_HOURS": "1.25"})
    assert only_tier2.approval_deadlines.slas == {Tier.TIER2: dt.timedelta(minutes=75)}
    assert Settings.from_env({}).approval_deadlines.slas == {}


@pytest.mark.parametrize("bad", ["0", "-1", "soon"])
def test_a_bad_deadline_names_its_variable(bad):
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"MDSTUDIO_TIER3_APPROVAL_SLA_HOURS": bad})
    assert refused.value.variable == "MDSTUDIO_TIER3_APPROVAL_SLA_HOURS"
    assert "soon" not in str(refused.value)


def test_the_deadline_rule():
    rule = ApprovalDeadlines({Tier.TIER1: dt.timedelta(hours=1)})
    requested = NOW - dt.timedelta(hours=1)
    assert rule.deadline(Tier.TIER1, requested) == NOW
    assert rule.overdue("tier1", requested, NOW)  # at the deadline it is overdue
    assert not rule.overdue("tier1", requested, NOW - dt.timedelta(seconds=1))
    assert rule.deadline(Tier.TIER2, requested) is None
    assert not rule.overdue(Tier.TIER2, requested - dt.timedelta(days=99), NOW)
    assert rule.requested_before(NOW) == {Tier.TIER1: NOW - dt.timedelta(hours=1)}


def aged(engine, approval_id, hours: float) -> None:
    """Make a request look `hours` old."""
    with engine.begin() as connection:
        connection.execute(
            sa.update(tables.approvals)
            .where(tables.approvals.c.id == approval_id)
            .values(requested_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours))
        )


def overdue_events(engine) -> list[Event]:
    with UnitOfWork(engine) as uow:
        return [e for e in uow.events.list(limit=1000) if e.type == "approval.overdue"]


def test_each_overdue_request_gets_one_event(engine, uow, tenant):
    settings = Settings(approval_sla_hours=24.0, tier2_approval_sla_hours=0.5)
    alice = person(tenant, "alice")
    late_tier2 = approvals.submit(uow, alice, metadata_request("a.b", tier="tier2"), SETTINGS)
    young_tier2 = approvals.submit(uow, alice, metadata_request("a.c", tier="tier2"), SETTINGS)
    young_tier3 = approvals.submit(uow, alice, glossary_request(), SETTINGS)
    decided = approvals.submit(uow, alice, metadata_request("a.d", tier="tier2"), SETTINGS)
    approvals.reject(uow, person(tenant, "bob", STEWARD), decided.id, "no")
    other = approvals.submit(
        uow,
        person(uuid.uuid4(), "x"),
        metadata_request("a.e", tier="tier2"),
        SETTINGS,
    )
    for approval_id, hours in [
        (late_tier2.id, 0.75),
        (young_tier2.id, 0.25),
        (young_tier3.id, 2),
        (decided.id, 5),
        (other.id, 1),
    ]:
        aged(engine, approval_id, hours)
    marked = deadlines.mark_overdue(uow, settings)
    assert {a.id for a in marked} == {late_tier2.id, other.id}
    events = overdue_events(engine)
    assert sorted(e.correlation_id for e in events) == sorted([late_tier2.id, other.id])
    event = next(e for e in events if e.correlation_id == late_tier2.id)
    assert event.actor == "approval_deadline_sensor" and event.entity_key == "a.b"
    assert event.payload["tier"] == "tier2" and event.payload["sla_hours"] == 0.5
    deadline = dt.datetime.fromisoformat(event.payload["deadline"])
    requested = dt.datetime.fromisoformat(event.payload["requested_at"])
    assert deadline - requested == dt.timedelta(minutes=30)
    stored = approvals.get_approval(uow, alice, late_tier2.id)
    assert stored.overdue_at is not None
    # The next tick writes nothing again; a request that ages past its deadline later does.
    assert deadlines.mark_overdue(uow, settings) == []
    aged(engine, young_tier2.id, 0.6)
    assert [a.id for a in deadlines.mark_overdue(uow, settings)] == [young_tier2.id]
    assert len(overdue_events(engine)) == 3
    assert event_types(engine, decided.id) == ["approval.rejected"]


def test_without_a_deadline_nothing_is_overdue(engine, uow, tenant):
    pending = approvals.submit(uow, person(tenant, "a"), glossary_request(), SETTINGS)
    aged(engine, pending.id, 1000)
    assert deadlines.mark_overdue(uow, Settings()) == []


def test_a_change_set_is_overdue_once_at_its_strictest_tier(engine, uow, tenant):
    submitted = change_sets.submit(
        uow,
        person(tenant, "alice"),
        "Mixed",
        [glossary_request(), metadata_request()],
        Settings(),
    )
    aged(engine, submitted.approval.id, 2)
    settings = Settings(tier1_approval_sla_hours=1.0, tier3_approval_sla_hours=100.0)
    [marked] = deadlines.mark_overdue(uow, settings)
    assert marked.id == submitted.approval.id
    [event] = overdue_events(engine)
    assert (event.entity_type, event.entity_key) == (EntityType.CHANGE_SET, "Mixed")


def test_notifications_can_subscribe_to_overdue_requests():
    event = stored_event(
        1,
        "approval.overdue",
        uuid.uuid4(),
        "a.b",
        {"tier": "tier2"},
        actor="approval_deadline_sensor",
        occurred_at=NOW,
    )
    subscription = Subscription(
        id=uuid.uuid4(),
        tenant_id=event.tenant_id,
        url="https://hooks.example.com/x",
        events=("approval.overdue",),
        min_tier=Tier.TIER2,
        created_at=NOW,
        created_by="ada",
        secret="s",
    )
    assert subscription.wants(event)
    assert not Subscription(**{**subscription.__dict__, "min_tier": Tier.TIER1}).wants(event)


def test_metrics_count_overdue_requests_per_tenant_and_tier(engine, uow, tenant):
    alice = person(tenant, "alice")
    for key, hours in [("a.late", 3), ("a.later", 2), ("a.young", 0.5)]:
        pending = approvals.submit(uow, alice, metadata_request(key, tier="tier2"), SETTINGS)
        aged(engine, pending.id, hours)
    old_tier3 = approvals.submit(uow, alice, glossary_request(), SETTINGS)
    aged(engine, old_tier3.id, 50)
    found = samples(
        scraped(engine, {"MDSTUDIO_TIER2_APPROVAL_SLA_HOURS": "1"}).get("/metrics").text
    )
    t = str(tenant)
    assert value(found, "mdstudio_approvals_overdue", tenant=t, tier="tier2") == 2
    assert value(found, "mdstudio_approvals_overdue", tenant=t, tier="tier3") is None  # no SLA
    without = samples(scraped(engine).get("/metrics").text)
    assert value(without, "mdstudio_approvals_overdue", tenant=t, tier="tier2") is None
