"""The grouped queries behind `/metrics` (`CatalogMetrics`), checked row by row on both stores:
each groups by every label of its series, keeps tenants and keys apart in its joins, and
counts what it says it counts. (Surviving mutants of `make mutation` showed that the HTTP
tests, which read one tenant's few rows, told none of these apart from their broken variants.)"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest

from mdstudio_core.domain.events import NewEvent, validate_event
from mdstudio_core.domain.incidents import IncidentStatus
from mdstudio_core.domain.model import EntityType, Tier
from mdstudio_core.domain.notifications import DeliveryStatus
from mdstudio_core.service_layer import approvals
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import (
    SETTINGS,
    T0,
    add_entity,
    approve_metadata,
    delivery,
    incident,
    make_event,
    metadata_request,
    person,
    stored_profile,
)

A, B = uuid.UUID(int=1), uuid.UUID(int=2)
FIELD = EntityType.GLOBAL_METADATA
HOUR = dt.timedelta(hours=1)


def add_profile(
    uow: UnitOfWork,
    tenant: uuid.UUID,
    key: str,
    at: dt.datetime,
    score: float | None = 90.0,
    duration_ms: int | None = 1,
) -> None:
    profile = stored_profile(tenant, key, at, score)
    assert uow.profiles.add(dataclasses.replace(profile, duration_ms=duration_ms))


def test_a_fields_latest_score_is_its_own_newest_profiles_when_it_has_a_score(uow):
    """Only tier1/tier2 fields; the newest profile of that tenant's field (another tenant's
    newer or simultaneous profile of the same key, or a sibling field's, does not count); an
    unscored newest profile reports nothing rather than an older score."""
    with uow:
        add_entity(uow, FIELD, A, "finance.k1", tier=Tier.TIER1)
        add_entity(uow, FIELD, B, "finance.k1", tier=Tier.TIER1)
        add_entity(uow, FIELD, A, "finance.k2", tier=Tier.TIER2)
        add_entity(uow, FIELD, A, "finance.k3", tier=Tier.TIER3)
        add_profile(uow, A, "finance.k1", T0 + HOUR, 85.0)  # the newest, saved first
        add_profile(uow, A, "finance.k1", T0, 80.0)
        add_profile(uow, B, "finance.k1", T0 + 2 * HOUR, 60.0)
        add_profile(uow, A, "finance.k2", T0, 70.0)
        add_profile(uow, A, "finance.k2", T0 + HOUR, None)
        add_profile(uow, B, "finance.k2", T0 + HOUR, 50.0)  # B has no such field
        add_profile(uow, A, "finance.k3", T0, 10.0)
        uow.commit()
    with uow:
        scores = uow.metrics.latest_scores()
    assert sorted(scores) == [(A, "finance.k1", "tier1", 85.0), (B, "finance.k1", "tier1", 60.0)]


def test_unresolved_incidents_are_counted_by_tenant_and_tier(uow):
    with uow:
        for n, (tenant, tier, status) in enumerate(
            [
                (A, Tier.TIER1, IncidentStatus.OPEN),
                (A, Tier.TIER1, IncidentStatus.ACKNOWLEDGED),
                (A, Tier.TIER1, IncidentStatus.RESOLVED),
                (A, Tier.TIER2, IncidentStatus.OPEN),
                (B, Tier.TIER1, IncidentStatus.OPEN),
            ]
        ):  # a field each: a field has one active incident at most
            uow.incidents.add(incident(tenant, status, tier=tier, key=f"finance.f{n}"))
        uow.commit()
    with uow:
        counts = uow.metrics.open_incidents()
    assert sorted(counts) == [(A, "tier1", 2), (A, "tier2", 1), (B, "tier1", 1)]


def profile_event(tenant: uuid.UUID, tier: str, outcome: str) -> NewEvent:
    payload: dict[str, Any] = {"canonical_key": "finance.k", "tier": tier, "run_id": None}
    if outcome == "failed":
        payload["error"] = "boom"
    else:
        payload |= {
            "quality_score": 90.0,
            "completeness": None,
            "uniqueness": None,
            "validity": None,
            "row_count": 1,
            "profile_id": str(uuid.uuid4()),
            "trigger": "manual",
            "approval_id": None,
            "check_passed": True,
            "threshold": None,
        }
    kind = f"metadata.profile.{outcome}"
    return make_event(kind, tenant, "finance.k", validate_event(kind, payload), occurred_at=T0)


def test_profile_outcomes_are_counted_by_tenant_tier_and_outcome(uow):
    events = [
        profile_event(A, "tier1", "completed"),
        profile_event(A, "tier1", "completed"),
        profile_event(A, "tier1", "failed"),
        profile_event(A, "tier2", "completed"),
        profile_event(B, "tier1", "completed"),
    ]
    with uow:
        assert uow.metrics.last_event_id() == 0  # an empty outbox
        written = uow.events.append(events)
        uow.commit()
    with uow:
        outcomes = uow.metrics.profile_outcomes()
        assert uow.metrics.last_event_id() == written[-1].id
    assert sorted(outcomes) == [
        (A, "tier1", "completed", 2),
        (A, "tier1", "failed", 1),
        (A, "tier2", "completed", 1),
        (B, "tier1", "completed", 1),
    ]


def test_profile_durations_are_a_cumulative_histogram_per_tier(uow):
    """Buckets are in seconds and include their bound; the count and sum follow; a bucket no
    profile falls in reads 0. A profile counts under its own tenant's field's tier."""
    with uow:
        add_entity(uow, FIELD, A, "finance.k1", tier=Tier.TIER1)
        add_entity(uow, FIELD, A, "finance.k2", tier=Tier.TIER2)
        add_entity(uow, FIELD, B, "finance.k1", tier=Tier.TIER2)
        for duration in (1000, 1001, 2500):
            add_profile(uow, A, "finance.k1", T0, duration_ms=duration)
        add_profile(uow, A, "finance.k1", T0, duration_ms=None)  # not timed: not counted
        add_profile(uow, A, "finance.k2", T0, duration_ms=500)
        add_profile(uow, B, "finance.k1", T0, duration_ms=3000)
        uow.commit()
    with uow:
        histogram = sorted(uow.metrics.profile_durations([0.5, 1.0, 2.0]))
    assert [(tier, buckets, count) for tier, buckets, count, _ in histogram] == [
        ("tier1", [0, 1, 2], 3),
        ("tier2", [1, 1, 1], 2),
    ]
    assert [total for *_, total in histogram] == [pytest.approx(4.501), pytest.approx(3.5)]


def test_pending_requests_and_decisions_are_counted_by_their_labels(engine, uow):
    """Pending requests by tenant, tier and lane with the oldest request's time; decided ones
    by tenant and status."""
    submitted = {}
    for tenant, key, tier, lane in [
        (A, "finance.p1", "tier1", None),
        (A, "finance.p2", "tier1", None),
        (A, "finance.p3", "tier2", None),
        (A, "finance.p4", "tier2", "draft"),
        (A, "finance.p6", "tier1", "draft"),
        (B, "finance.p5", "tier1", None),
    ]:
        request = metadata_request(key=key, tier=tier, lane=lane)
        submitted[key] = approvals.submit(uow, person(tenant, "alice"), request, SETTINGS)
    for tenant, key in [(A, "finance.d1"), (A, "finance.d2"), (B, "finance.d3")]:
        approve_metadata(engine, tenant, key=key)
    rejected = approvals.submit(
        uow, person(A, "alice"), metadata_request(key="finance.d4"), SETTINGS
    )
    decider = person(A, "bob", rejected.required_role)
    approvals.reject(uow, decider, rejected.id, "not this one")

    with uow:
        pending = uow.metrics.pending_approvals()
        decisions = uow.metrics.decisions()
    oldest = {key: approval.requested_at for key, approval in submitted.items()}
    assert sorted(pending) == [
        (A, "tier1", "draft", 1, oldest["finance.p6"]),
        (A, "tier1", "kernel", 2, min(oldest["finance.p1"], oldest["finance.p2"])),
        (A, "tier2", "draft", 1, oldest["finance.p4"]),
        (A, "tier2", "governed", 1, oldest["finance.p3"]),
        (B, "tier1", "kernel", 1, oldest["finance.p5"]),
    ]
    assert sorted(decisions) == [(A, "approved", 2), (A, "rejected", 1), (B, "approved", 1)]


def test_deliveries_are_counted_by_status(uow):
    with uow:
        for n, status in enumerate(
            (DeliveryStatus.PENDING, DeliveryStatus.PENDING, DeliveryStatus.DEAD)
        ):
            uow.notifications.add_delivery(delivery(A, n, status=status))
        uow.commit()
    with uow:
        assert sorted(uow.metrics.deliveries()) == [("dead", 1), ("pending", 2)]
