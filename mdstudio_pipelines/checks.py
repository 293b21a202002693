"""The `quality_score_threshold` check: what a score means for each tier."""

from dataclasses import dataclass

import dagster as dg

from mdstudio_core.domain.model import Tier

SEVERITY = {
    Tier.TIER1: dg.AssetCheckSeverity.ERROR,
    Tier.TIER2: dg.AssetCheckSeverity.WARN,
    Tier.TIER3: dg.AssetCheckSeverity.WARN,
}


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    severity: dg.AssetCheckSeverity
    description: str
    metadata: dict


def evaluate_threshold(
    tier: Tier, score: float | None, minimum: float | None, score_note: str | None
) -> CheckOutcome:
    """tier1 below its minimum fails with ERROR, tier2 with WARN; tier3 is informational and
    always passes. A profile that could not be scored fails a tier1/tier2 check: an unscored
    governed field is not a healthy one."""
    metadata = {"tier": tier.value, "quality_score": score, "threshold": minimum}
    if minimum is None:
        return CheckOutcome(
            True, SEVERITY[tier], f"{tier.value}: informational, score {score}", metadata
        )
    if score is None:
        return CheckOutcome(
            False, SEVERITY[tier], f"not scored ({score_note or 'no scored column'})", metadata
        )
    passed = score >= minimum
    verb = "meets" if passed else "is below"
    return CheckOutcome(
        passed,
        SEVERITY[tier],
        f"score {score:g} {verb} the {tier.value} minimum {minimum:g}",
        metadata,
    )
