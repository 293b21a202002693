"""The checks: `quality_score_threshold` (an entity's profile, a daily table's day) and
`kpi_inputs_quality` (a KPI's trust), each the domain's quality gate as a Dagster check result.
What a score means per tier is decided in `mdstudio_core.domain.quality.quality_gate`."""

from typing import Any

import dagster as dg

from mdstudio_core.domain.quality import CheckVerdict, Severity

SEVERITY = {Severity.ERROR: dg.AssetCheckSeverity.ERROR, Severity.WARN: dg.AssetCheckSeverity.WARN}


def check_metadata(verdict: CheckVerdict) -> dict:
    return {
        "tier": verdict.tier.value,
        "quality_score": verdict.quality_score,
        "threshold": verdict.threshold,
    }


def check_result(
    check_name: str,
    verdict: CheckVerdict,
    asset_key: dg.AssetKey | None = None,
    metadata: dict | None = None,
) -> dg.AssetCheckResult:
    """The verdict of the asset being materialized (`asset_key` names it in a multi-asset)."""
    return dg.AssetCheckResult(
        check_name=check_name, asset_key=asset_key, **_verdict(verdict, metadata)
    )


def check_evaluation(
    asset_key: dg.AssetKey,
    check_name: str,
    partition: str | None,
    verdict: CheckVerdict,
    metadata: dict | None = None,
) -> dg.AssetCheckEvaluation:
    """The verdict of an asset (of one partition), reported from a run or a sensor."""
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=check_name,
        partition=partition,
        **_verdict(verdict, metadata),
    )


def _verdict(verdict: CheckVerdict, metadata: dict | None) -> dict[str, Any]:
    """What a check result and a check evaluation say alike of a verdict: passed or not, its
    severity, its description and metadata (the verdict's own unless given)."""
    return {
        "passed": verdict.passed,
        "severity": SEVERITY[verdict.severity],
        "description": verdict.description,
        "metadata": metadata if metadata is not None else check_metadata(verdict),
    }
