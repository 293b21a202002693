"""The `quality_score_threshold` check: the domain's quality gate as a Dagster check result.
What a score means per tier is decided in `mdstudio_core.domain.quality.quality_gate`."""

import dagster as dg

from mdstudio_core.domain.quality import CheckVerdict, Severity

SEVERITY = {Severity.ERROR: dg.AssetCheckSeverity.ERROR, Severity.WARN: dg.AssetCheckSeverity.WARN}


def check_metadata(verdict: CheckVerdict) -> dict:
    return {
        "tier": verdict.tier.value,
        "quality_score": verdict.quality_score,
        "threshold": verdict.threshold,
    }


def check_result(check_name: str, verdict: CheckVerdict) -> dg.AssetCheckResult:
    """The verdict of the asset being materialized."""
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=verdict.passed,
        severity=SEVERITY[verdict.severity],
        description=verdict.description,
        metadata=check_metadata(verdict),
    )


def check_evaluation(
    asset_key: dg.AssetKey, check_name: str, partition: str, verdict: CheckVerdict
) -> dg.AssetCheckEvaluation:
    """The verdict of one partition, reported from a job."""
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=check_name,
        passed=verdict.passed,
        partition=partition,
        severity=SEVERITY[verdict.severity],
        description=verdict.description,
        metadata=check_metadata(verdict),
    )
