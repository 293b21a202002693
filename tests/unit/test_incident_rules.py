"""The incident rules of `mdstudio_core.domain.incidents`, without a store: when the hysteresis
opens and resolves an incident, who may handle one, and what each transition's event says.
(`make mutation` found these rules covered only by the Dagster tests.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest

from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.incidents import (
    Incident,
    IncidentPolicy,
    IncidentStatus,
    ProfileOutcome,
    assess,
)
from mdstudio_core.domain.model import EntityType, Tier
from mdstudio_core.domain.quality import QualityThresholds
from tests.support.factories import KERNEL_OWNER, STEWARD, person

TENANT = uuid.UUID(int=0x7E)
KEY = "finance.revenue.gross_amount"
NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
THRESHOLDS = QualityThresholds(tier1_min_score=80.0, tier2_min_score=70.0)
POLICY = IncidentPolicy(open_after=2, recovery_margin=2.5)


def failed(score: float | None = 50.0, run: str = "run-new") -> ProfileOutcome:
    return ProfileOutcome(False, score, uuid.uuid4() if score is not None else None, run)


def passed(score: float = 90.0) -> ProfileOutcome:
    return ProfileOutcome(True, score, uuid.uuid4(), "run-ok")


def incident(status: IncidentStatus = IncidentStatus.OPEN, tier: Tier = Tier.TIER1) -> Incident:
    return Incident(
        id=uuid.uuid4(),
        tenant_id=TENANT,
        canonical_key=KEY,
        tier=tier,
        status=status,
        opened_at=NOW - dt.timedelta(days=1),
        opening_profile_id=uuid.uuid4(),
        last_score=41.0,
    )


def judge(recent, active=None, previous=None, tier=Tier.TIER1, policy=POLICY):
    """The assessment as (incident to store, event)."""
    found = assess(TENANT, KEY, tier, recent, active, previous, THRESHOLDS, policy, NOW)
    return found.incident, found.event


def test_a_streak_of_open_after_failures_opens_an_incident_and_says_so():
    previous = incident(IncidentStatus.RESOLVED)
    newest, older = failed(42.5, run="run-2"), failed(60.0, run="run-1")
    opened, event = judge([newest, older], previous=previous)

    assert opened.status is IncidentStatus.OPEN and opened.active
    assert (opened.tenant_id, opened.canonical_key, opened.tier) == (TENANT, KEY, Tier.TIER1)
    assert opened.opened_at == NOW
    assert opened.opening_profile_id == newest.profile_id
    assert opened.last_score == 42.5
    assert opened.previous_incident_id == previous.id
    assert opened.acknowledged_by is opened.resolved_by is opened.resolution is None
    assert event.type == "quality.incident.opened"
    assert (event.tenant_id, event.entity_key, event.correlation_id) == (TENANT, KEY, opened.id)
    assert event.entity_type is EntityType.GLOBAL_METADATA
    assert (event.actor, event.occurred_at) == ("mdstudio", NOW)
    assert event.payload == {
        "incident_id": str(opened.id),
        "canonical_key": KEY,
        "tier": "tier1",
        "quality_score": 42.5,
        "threshold": 80.0,
        "profile_id": str(newest.profile_id),
        "actor": "mdstudio",
        "run_id": "run-2",
        "previous_incident_id": str(previous.id),
    }


def test_a_first_incident_points_to_no_previous_one():
    opened, event = judge([failed(None), failed()])
    assert opened.previous_incident_id is None
    assert opened.opening_profile_id is None and opened.last_score is None
    assert event.payload["previous_incident_id"] is None
    assert event.payload["threshold"] == 80.0


@pytest.mark.parametrize(
    "recent",
    [
        [],
        [failed()],  # one failure short of the streak
        [failed(), passed()],
        [passed(), failed()],
    ],
    ids=["nothing", "too-short", "older-passed", "newest-passed"],
)
def test_no_incident_without_a_full_streak_of_failures(recent):
    assert judge(recent) == (None, None)


def test_only_the_latest_open_after_outcomes_count():
    assert judge([failed(), failed(), passed()])[0] is not None


def test_tier3_has_no_minimum_and_no_incident():
    assert judge([failed(), failed()], tier=Tier.TIER3) == (None, None)
    active = incident(tier=Tier.TIER3)
    assert judge([passed(99.0)], active=active, tier=Tier.TIER3) == (None, None)


def test_tier2_is_judged_against_its_own_minimum():
    _, event = judge([failed(), failed()], tier=Tier.TIER2)
    assert event.payload["threshold"] == 70.0
    active = incident(tier=Tier.TIER2)
    assert judge([passed(72.5)], active=active, tier=Tier.TIER2)[1] is not None
    assert judge([passed(72.4)], active=active, tier=Tier.TIER2)[1] is None


def test_a_score_at_the_minimum_plus_the_margin_resolves_by_recovery():
    active = incident(IncidentStatus.ACKNOWLEDGED)
    latest = ProfileOutcome(True, 82.5, uuid.uuid4(), "run-9")
    resolved, event = judge([latest], active=active)

    assert resolved.id == active.id and resolved.status is IncidentStatus.RESOLVED
    assert not resolved.active
    assert (resolved.resolved_by, resolved.resolved_at) == ("mdstudio", NOW)
    reason = "recovered: score 82.5 reached the tier1 minimum 80 plus the margin of 2.5"
    assert resolved.resolution == reason
    assert resolved.last_score == 82.5
    assert event.type == "quality.incident.resolved"
    assert event.correlation_id == active.id
    assert event.payload == {
        "incident_id": str(active.id),
        "canonical_key": KEY,
        "tier": "tier1",
        "quality_score": 82.5,
        "threshold": 80.0,
        "profile_id": str(latest.profile_id),
        "actor": "mdstudio",
        "run_id": "run-9",
        "reason": reason,
    }


@pytest.mark.parametrize("score", [82.4, 80.0, None])
def test_a_score_short_of_the_margin_only_updates_the_last_score(score):
    active = incident()
    updated, event = judge([ProfileOutcome(score is not None, score, None, "r")], active=active)
    assert event is None
    assert updated == dataclasses.replace(active, last_score=score)


def test_a_failure_while_an_incident_is_active_opens_no_second_one():
    active = incident()
    updated, event = judge([failed(12.0), failed(13.0)], active=active)
    assert (updated.id, updated.status, updated.last_score, event) == (
        active.id,
        IncidentStatus.OPEN,
        12.0,
        None,
    )


def test_the_default_policy_opens_on_the_first_failure_and_needs_two_points():
    assert IncidentPolicy() == IncidentPolicy(open_after=1, recovery_margin=2.0)
    assert judge([failed()], policy=IncidentPolicy())[0] is not None
    active = incident()
    assert judge([passed(82.0)], active=active, policy=IncidentPolicy())[1] is not None
    assert judge([passed(81.9)], active=active, policy=IncidentPolicy())[1] is None


@pytest.mark.parametrize("roles", [(KERNEL_OWNER,), ("tenant_admin",)])
def test_the_deciding_role_or_a_tenant_admin_acknowledges(roles):
    active = incident()
    actor = person(TENANT, "olga", *roles)
    acknowledged, event = active.acknowledge(actor, KERNEL_OWNER, "looking", NOW, THRESHOLDS)

    assert acknowledged.status is IncidentStatus.ACKNOWLEDGED and acknowledged.active
    assert (acknowledged.acknowledged_by, acknowledged.acknowledged_at) == ("olga", NOW)
    assert acknowledged.resolved_by is None
    assert event.type == "quality.incident.acknowledged"
    assert (event.actor, event.correlation_id, event.occurred_at) == ("olga", active.id, NOW)
    assert event.payload == {
        "incident_id": str(active.id),
        "canonical_key": KEY,
        "tier": "tier1",
        "quality_score": 41.0,
        "threshold": 80.0,
        "profile_id": str(active.opening_profile_id),
        "actor": "olga",
        "run_id": None,
        "note": "looking",
    }


def test_an_acknowledgement_without_a_note_carries_none():
    _, event = incident().acknowledge(
        person(TENANT, "olga", KERNEL_OWNER), KERNEL_OWNER, None, NOW, THRESHOLDS
    )
    assert event.payload["note"] is None


def test_another_role_may_not_handle_an_incident():
    active = incident()
    steward = person(TENANT, "sam", STEWARD)
    with pytest.raises(Forbidden, match=f"role {KERNEL_OWNER} .* or tenant_admin"):
        active.acknowledge(steward, KERNEL_OWNER, None, NOW, THRESHOLDS)
    with pytest.raises(Forbidden):
        active.resolve(steward, KERNEL_OWNER, "fixed", NOW, THRESHOLDS)


@pytest.mark.parametrize("status", [IncidentStatus.ACKNOWLEDGED, IncidentStatus.RESOLVED])
def test_only_an_open_incident_is_acknowledged(status):
    actor = person(TENANT, "olga", KERNEL_OWNER)
    with pytest.raises(Conflict, match=f"already {status.value}"):
        incident(status).acknowledge(actor, KERNEL_OWNER, None, NOW, THRESHOLDS)


@pytest.mark.parametrize("status", [IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED])
def test_a_person_resolves_an_active_incident_with_a_reason(status):
    active = incident(status)
    actor = person(TENANT, "olga", "tenant_admin")
    resolved, event = active.resolve(actor, KERNEL_OWNER, "  upstream fixed ", NOW, THRESHOLDS)

    assert resolved.status is IncidentStatus.RESOLVED
    assert (resolved.resolved_by, resolved.resolved_at) == ("olga", NOW)
    assert resolved.resolution == "upstream fixed"
    assert event.type == "quality.incident.resolved"
    assert event.payload["reason"] == "upstream fixed"
    assert event.payload["actor"] == "olga"
    assert event.payload["profile_id"] == str(active.opening_profile_id)


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_resolving_needs_a_reason(reason):
    actor = person(TENANT, "olga", KERNEL_OWNER)
    with pytest.raises(InvalidInput, match="reason is required") as caught:
        incident().resolve(actor, KERNEL_OWNER, reason, NOW, THRESHOLDS)
    assert caught.value.field == "reason"


def test_a_resolved_incident_is_not_resolved_twice():
    actor = person(TENANT, "olga", KERNEL_OWNER)
    with pytest.raises(Conflict, match="already resolved"):
        incident(IncidentStatus.RESOLVED).resolve(actor, KERNEL_OWNER, "again", NOW, THRESHOLDS)


def test_an_event_read_back_is_shown_as_json():
    _, new = judge([failed(), failed()])
    shown = Event(**dataclasses.asdict(new), id=42).to_json()
    assert shown == {
        "id": 42,
        "type": "quality.incident.opened",
        "tenant_id": str(TENANT),
        "entity_type": "GLOBAL_METADATA",
        "entity_key": KEY,
        "correlation_id": str(new.correlation_id),
        "actor": "mdstudio",
        "occurred_at": "2026-03-01T12:00:00+00:00",
        "payload": new.payload,
    }
