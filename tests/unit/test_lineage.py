"""Lineage rules without a store: the trust function (staleness, unscored, unbound), schedule
periods, the impact hysteresis, tenant labels and names, cascade planning from events."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.events import Event
from mdstudio_core.domain.incidents import IncidentPolicy
from mdstudio_core.domain.lineage import (
    CatalogSnapshot,
    FieldNode,
    InputState,
    KpiNode,
    TableNode,
    assess_trust,
    check_tenant_name,
    kpi_trust,
    schedule_period,
    tenant_label,
)
from mdstudio_core.domain.model import EntityType, ProfileReason, Tier
from mdstudio_core.domain.quality import QualityThresholds
from mdstudio_core.service_layer.profile_requests import candidates_from_events

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
PERIODS = {Tier.TIER1: dt.timedelta(days=1), Tier.TIER2: dt.timedelta(days=7)}
TENANT = uuid.UUID("12345678-9abc-4def-8123-456789abcdef")


def profiled(key: str, score: float | None, hours_ago: float, tier: Tier = Tier.TIER1):
    return InputState(
        key=key,
        tier=tier,
        bound=True,
        quality_score=score,
        profiled_at=NOW - dt.timedelta(hours=hours_ago),
        profiled=True,
    )


def test_trust_is_the_lowest_input_score_and_names_the_weakest_input():
    trust = kpi_trust(
        "k", Tier.TIER1, [profiled("b", 91.5, 1), profiled("a", 72.25, 2)], PERIODS, NOW
    )
    assert (trust.trust_score, trust.weakest_input) == (72.25, "a")
    assert [i.key for i in trust.inputs] == ["a", "b"]
    assert trust.as_dict()["inputs"][0] == {
        "key": "a",
        "tier": "tier1",
        "quality_score": 72.25,
        "profiled_at": (NOW - dt.timedelta(hours=2)).isoformat(),
        "stale": False,
    }
    assert trust.unscored == []


def test_an_input_older_than_two_periods_of_its_tier_is_stale_and_discounted():
    fresh_tier2 = profiled("weekly", 90.0, 24 * 13, Tier.TIER2)  # 13 days: within 2 weeks
    stale_tier1 = profiled("daily", 95.0, 49)  # 49 hours: beyond 2 days
    trust = kpi_trust("k", Tier.TIER2, [fresh_tier2, stale_tier1], PERIODS, NOW)
    assert {i.key: i.stale for i in trust.inputs} == {"daily": True, "weekly": False}
    assert trust.trust_score == 76.0  # 95 x 0.8 is below 90
    assert trust.weakest_input == "daily"
    exactly_two_days = profiled("daily", 95.0, 48)
    assert not kpi_trust("k", Tier.TIER1, [exactly_two_days], PERIODS, NOW).inputs[0].stale


def test_a_tier_without_a_schedule_is_never_stale():
    old = profiled("note", 88.0, 24 * 365, Tier.TIER3)
    assert kpi_trust("k", Tier.TIER2, [old], PERIODS, NOW).trust_score == 88.0


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (InputState("x", None, bound=False), "not found"),
        (InputState("x", Tier.TIER1, bound=False), "unbound (or deprecated)"),
        (InputState("x", Tier.TIER1, bound=True), "never profiled"),
        (profiled("x", None, 1), "its latest profile has no score"),
    ],
)
def test_an_input_that_cannot_be_scored_makes_the_kpi_unscored_and_says_which(state, reason):
    trust = kpi_trust("k", Tier.TIER1, [profiled("a", 99.0, 1), state], PERIODS, NOW)
    assert trust.trust_score is None
    assert trust.weakest_input == "x"
    assert trust.as_dict()["unscored_inputs"] == [{"key": "x", "reason": reason}]


def test_a_kpi_without_inputs_is_unscored():
    trust = kpi_trust("k", Tier.TIER1, [], PERIODS, NOW)
    assert (trust.trust_score, trust.weakest_input, trust.inputs) == (None, None, ())


def test_schedule_periods_from_cron():
    assert schedule_period("0 2 * * *") == dt.timedelta(days=1)
    assert schedule_period("0 3 * * 0") == dt.timedelta(days=7)
    assert schedule_period("0 3 1 * *") == dt.timedelta(days=30)
    assert schedule_period("15 * * * *") == dt.timedelta(hours=1)


def _assess(score: float | None, previous=None, tier: Tier = Tier.TIER1, open_after: int = 1):
    trust = kpi_trust("k", tier, [profiled("a", score, 1)], PERIODS, NOW)
    return assess_trust(
        TENANT, trust, previous, QualityThresholds(), IncidentPolicy(open_after, 2.0)
    )


def test_impact_opens_below_the_minimum_and_recovers_at_the_minimum_plus_the_margin():
    state, event = _assess(85.0)
    assert (state.impacted, event) == (False, None)
    state, event = _assess(79.0, state)
    assert state.impacted and event.type == "kpi.quality.impacted"
    assert event.payload == {
        "canonical_key": "k",
        "trust_score": 79.0,
        "weakest_input": "a",
        "threshold": 80.0,
    }
    assert event.entity_type is EntityType.KPI
    state, event = _assess(81.0, state)  # above the line, below the margin: still impacted
    assert (state.impacted, event) == (True, None)
    state, event = _assess(None, state)  # unscored moves nothing
    assert (state.impacted, event) == (True, None)
    state, event = _assess(82.0, state)
    assert not state.impacted and event.type == "kpi.quality.recovered"


def test_impact_waits_for_open_after_computations_in_a_row():
    state, event = _assess(60.0, open_after=2)
    assert (state.impacted, state.below_streak, event) == (False, 1, None)
    state, event = _assess(90.0, state, open_after=2)
    assert state.below_streak == 0
    state, _ = _assess(60.0, state, open_after=2)
    state, event = _assess(60.0, state, open_after=2)
    assert state.impacted and event.type == "kpi.quality.impacted"


def test_a_tier3_kpi_is_never_impacted():
    state, event = _assess(1.0, tier=Tier.TIER3)
    assert (state.impacted, event) == (False, None)


def test_tenant_labels_and_names():
    assert tenant_label(TENANT, None) == "t_456789abcdef_8123_4def_9abc_12345678"
    assert tenant_label(TENANT, "acme") == "acme"
    assert check_tenant_name(" acme_eu ") == "acme_eu"
    for ok in ("t_x", "T_0123abcd", "t0123", "team_0123", "tenant_f"):
        assert check_tenant_name(ok) == ok
    unnamed = tenant_label(uuid.uuid4(), None)
    for bad in ("", "9lives", "a-b", "a b", "t_0123abcd", "t_", "t_abc_", unnamed, "x" * 64):
        with pytest.raises(InvalidInput) as refused:
            check_tenant_name(bad)
        assert refused.value.field == "name"


def test_time_ordered_ids_sharing_their_leading_digits_get_different_labels():
    first = uuid.UUID("0190a1b2-0000-7abc-8def-0123456789ab")
    second = uuid.UUID("0190a1b2-1111-7abc-8def-0123456789ab")
    assert tenant_label(first, None) == "t_0123456789ab_8def_7abc_0000_0190a1b2"
    assert tenant_label(second, None) == "t_0123456789ab_8def_7abc_1111_0190a1b2"


def test_the_snapshot_travels_as_json():
    field = FieldNode("f", Tier.TIER1, "team", "int", ({"name": "c", "min": 0},))
    snapshot = CatalogSnapshot(
        tenants={TENANT: "acme"},
        tables=(TableNode(TENANT, "acme", "wh", None, "t", (field,)),),
        kpis=(KpiNode(TENANT, "acme", "k", "K", Tier.TIER2, None, ("f",)),),
    )
    assert CatalogSnapshot.from_json(snapshot.to_json()) == snapshot
    assert snapshot.table_of(TENANT, "f").label == "wh.t"


def test_a_lineage_change_asks_for_a_profile_of_each_added_input():
    approval = uuid.uuid4()
    event = Event(
        type="lineage.changed",
        tenant_id=TENANT,
        entity_type=EntityType.KPI,
        entity_key="k",
        correlation_id=approval,
        actor="bob",
        occurred_at=NOW,
        payload={"canonical_key": "k", "added_inputs": ["a", "b"], "removed_inputs": ["c"]},
        id=7,
    )
    candidates = candidates_from_events([event])
    assert [(c.canonical_key, c.reason) for c in candidates] == [
        ("a", ProfileReason.KPI_DEPENDENCY),
        ("b", ProfileReason.KPI_DEPENDENCY),
    ]
    assert all(c.approval_id == approval and c.event_ids == (7,) for c in candidates)


def test_the_trust_record_names_the_kpi_its_tier_and_every_input():
    trust = kpi_trust("k", Tier.TIER2, [profiled("a", 72.126, 1)], PERIODS, NOW)
    assert trust.as_dict() == {
        "key": "k",
        "entity_type": "KPI",
        "tier": "tier2",
        "trust_score": 72.13,  # rounded to 2 decimals
        "weakest_input": "a",
        "inputs": [trust.inputs[0].as_dict()],
        "unscored_inputs": [],
    }


def test_an_input_scored_zero_gives_a_trust_of_zero():
    """0.0 is a score, not a missing one."""
    trust = kpi_trust(
        "k", Tier.TIER1, [profiled("a", 0.0, 1), profiled("b", 50.0, 1)], PERIODS, NOW
    )
    assert (trust.trust_score, trust.weakest_input) == (0.0, "a")


def test_an_input_that_cannot_be_scored_has_no_effective_score():
    """Even when an older profile left a score behind (an input unbound since)."""
    unbound = InputState("x", Tier.TIER1, bound=False, quality_score=90.0, profiled=True)
    trust = kpi_trust("k", Tier.TIER1, [unbound, InputState("y", None, bound=False)], PERIODS, NOW)
    assert [(i.key, i.effective_score) for i in trust.inputs] == [("x", None), ("y", None)]


def test_schedule_periods_of_stepped_and_unrestricted_fields():
    """A stepped field is read as its unit: every 6 hours is hourly, every 5 minutes minutely."""
    assert schedule_period("0 */6 * * *") == dt.timedelta(hours=1)
    assert schedule_period("*/5 * * * *") == dt.timedelta(minutes=1)
    assert schedule_period("* * * * *") == dt.timedelta(minutes=1)


def test_a_trust_exactly_at_the_minimum_is_not_below_it():
    state, event = _assess(80.0)
    assert (state.impacted, state.below_streak, event) == (False, 0, None)


def test_the_state_keeps_the_trust_and_recovery_resets_the_streak():
    state, _ = _assess(79.0)
    assert (state.trust_score, state.weakest_input, state.impacted) == (79.0, "a", True)
    state, event = _assess(95.0, state)
    assert event.type == "kpi.quality.recovered"
    assert (state.trust_score, state.impacted, state.below_streak) == (95.0, False, 0)


def test_a_tenant_name_may_have_63_characters():
    assert check_tenant_name("x" * 63) == "x" * 63


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "9lives",
            "name: must be an identifier: letters, digits and _, not starting with a digit "
            "(at most 63 characters)",
        ),
        ("t_0123abcd", "name: t_ followed by hex digits and _ is reserved for unnamed tenants"),
    ],
)
def test_a_refused_tenant_name_says_why(name, message):
    with pytest.raises(InvalidInput) as refused:
        check_tenant_name(name)
    assert str(refused.value) == message


def test_table_of_finds_the_table_binding_the_field_in_that_tenant():
    orders = TableNode(
        TENANT, "acme", "wh", None, "orders", (FieldNode("a", Tier.TIER1, None, "int", ()),)
    )
    items = TableNode(
        TENANT, "acme", "wh", None, "items", (FieldNode("b", Tier.TIER1, None, "int", ()),)
    )
    snapshot = CatalogSnapshot(tenants={TENANT: "acme"}, tables=(orders, items))
    assert snapshot.table_of(TENANT, "b") is items
    assert snapshot.table_of(TENANT, "nope") is None
    assert snapshot.table_of(uuid.uuid4(), "a") is None


def test_equal_snapshots_give_the_same_json():
    """The text is fingerprinted to tell whether the catalog changed: key order must not count."""

    def snapshot(column):
        field = FieldNode("f", Tier.TIER1, "team", "int", (column,))
        return CatalogSnapshot(
            tenants={TENANT: "acme"}, tables=(TableNode(TENANT, "acme", "wh", None, "t", (field,)),)
        )

    one, other = snapshot({"name": "c", "min": 0}), snapshot({"min": 0, "name": "c"})
    assert one == other
    assert one.to_json() == other.to_json()
