"""The quality gate: what a score means per tier (the Dagster check, `profiles preview` and
alerts all ask this one function)."""

from __future__ import annotations

import pytest

from mdstudio_core.domain.model import Tier
from mdstudio_core.domain.quality import QualityThresholds, Severity, quality_gate


@pytest.mark.parametrize(
    ("tier", "score", "passed", "severity"),
    [
        (Tier.TIER1, 79.99, False, Severity.ERROR),
        (Tier.TIER1, 80.0, True, Severity.ERROR),
        (Tier.TIER2, 69.5, False, Severity.WARN),
        (Tier.TIER2, 70.0, True, Severity.WARN),
        (Tier.TIER3, 10.0, True, Severity.WARN),
        (Tier.TIER1, None, False, Severity.ERROR),
        (Tier.TIER2, None, False, Severity.WARN),
        (Tier.TIER3, None, True, Severity.WARN),
    ],
)
def test_verdict_per_tier(tier, score, passed, severity):
    verdict = quality_gate(tier, score, "table is empty", QualityThresholds())
    assert (verdict.passed, verdict.severity, verdict.tier) == (passed, severity, tier)


def test_thresholds_are_per_tier_and_described():
    thresholds = QualityThresholds(tier1_min_score=95, tier2_min_score=50)
    verdict = quality_gate(Tier.TIER1, 91.89, None, thresholds)
    assert not verdict.passed
    assert verdict.threshold == 95
    assert verdict.description == "score 91.89 is below the tier1 minimum 95"
    assert quality_gate(Tier.TIER2, 51, None, thresholds).passed
    unscored = quality_gate(Tier.TIER1, None, "table is empty", thresholds)
    assert unscored.description == "not scored (table is empty)"
    assert quality_gate(Tier.TIER3, 5, None, thresholds).threshold is None


def test_an_unscored_profile_without_a_note_is_described_as_such():
    verdict = quality_gate(Tier.TIER2, None, None, QualityThresholds())
    assert verdict.description == "not scored (no scored column)"
    assert quality_gate(Tier.TIER3, 42.5, None, QualityThresholds()).description == (
        "tier3: informational, score 42.5"
    )
