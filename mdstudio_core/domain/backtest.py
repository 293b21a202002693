"""Backtest: what a rule change would have done to a field's recent days, before anyone approves
it. Each day's rows are scored under the live rules and under the proposed ones by the one
formula (`quality.quality_score`), judged by the tier's gate (`quality.quality_gate`), and the
incident rule (`incidents.assess`) is replayed over those days, so the numbers a steward sees
are the ones the profiler and the incidents would have produced. Nothing here touches a store
or a warehouse.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mdstudio_core.domain.incidents import Incident, IncidentPolicy, ProfileOutcome, assess
from mdstudio_core.domain.incremental import DayCounts
from mdstudio_core.domain.model import ColumnRule, Tier
from mdstudio_core.domain.quality import (
    DEFAULT_WEIGHTS,
    ColumnProfile,
    QualityThresholds,
    ScoreWeights,
    quality_gate,
    quality_score,
)

SIDES = ("live", "proposed")
NEEDS_PARTITION = (
    "a day partition: declare binding.incremental with a date or date-time column and "
    '"partition": "day" to backtest day by day; only today is shown'
)
NEEDS_ONE_TABLE = (
    "the live and the proposed binding on one table with a day partition to backtest day by "
    "day; only today is shown"
)


@dataclass(frozen=True)
class ScoredRule:
    """A bound column's rules as the warehouse can apply them, the same on every day: `key`
    names the day's counts that are its; `applied` the value rules that apply to its type,
    `not_applied` those that cannot (validity is then not scored, as in a profile)."""

    rule: ColumnRule
    key: str
    data_type: str | None
    applied: tuple[str, ...]
    not_applied: tuple[str, ...]


def day_score(
    columns: Sequence[ScoredRule], day: DayCounts, weights: ScoreWeights = DEFAULT_WEIGHTS
) -> float | None:
    """The score of one day's rows alone under `columns`' rules, by the one formula."""
    profiles = [
        ColumnProfile(
            name=column.rule.name,
            data_type=column.data_type,
            n=day.row_count,
            non_null=day.columns[column.key].non_null,
            distinct=day.columns[column.key].distinct,
            valid=day.columns[column.key].valid,
            nullable=column.rule.nullable,
            unique=column.rule.unique,
            rules=list(column.applied),
            rules_not_applied=list(column.not_applied),
        )
        for column in columns
    ]
    return quality_score(profiles, weights).quality_score


@dataclass(frozen=True)
class BacktestDay:
    day: dt.date
    live_score: float | None
    proposed_score: float | None

    def score(self, side: str) -> float | None:
        return self.live_score if side == "live" else self.proposed_score


@dataclass(frozen=True)
class Backtest:
    """A field's days under both sets of rules, and what the gate and the incident rule would
    have made of them. `needs` says what is missing for a day-by-day backtest (then `days`
    holds today only); `partition` names the incremental column the days came from."""

    days: tuple[BacktestDay, ...]
    tier: Tier
    minimum: float | None
    window_days: int
    policy: IncidentPolicy
    failing_days: dict[str, int]
    incidents: dict[str, int]
    partition: str | None = None
    needs: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "days": [
                {
                    "day": day.day.isoformat(),
                    "live_score": day.live_score,
                    "proposed_score": day.proposed_score,
                }
                for day in self.days
            ],
            "failing_days": dict(self.failing_days),
            "incidents": dict(self.incidents),
            "tier": self.tier.value,
            "minimum": self.minimum,
            "window_days": self.window_days,
            "partition": self.partition,
            "needs": self.needs,
            "incident_settings": {
                "open_after": self.policy.open_after,
                "recovery_margin": self.policy.recovery_margin,
            },
        }


def backtest(
    days: Sequence[BacktestDay],
    *,
    tier: Tier,
    thresholds: QualityThresholds,
    policy: IncidentPolicy,
    window_days: int,
    tenant_id: uuid.UUID,
    canonical_key: str,
    partition: str | None = None,
    needs: str | None = None,
) -> Backtest:
    """Judge the days (oldest first) under each set of rules: the days that would fail the
    tier's minimum, and the incidents the incident settings would have opened."""
    ordered = sorted(days, key=lambda day: day.day)
    failing = {
        side: sum(
            not quality_gate(tier, day.score(side), None, thresholds).passed for day in ordered
        )
        for side in SIDES
    }
    opened = {
        side: incidents_opened(
            [(day.day, day.score(side)) for day in ordered],
            tier=tier,
            thresholds=thresholds,
            policy=policy,
            tenant_id=tenant_id,
            canonical_key=canonical_key,
        )
        for side in SIDES
    }
    return Backtest(
        days=tuple(ordered),
        tier=tier,
        minimum=thresholds.minimum(tier),
        window_days=window_days,
        policy=policy,
        failing_days=failing,
        incidents=opened,
        partition=partition,
        needs=needs,
    )


def incidents_opened(
    scores: Sequence[tuple[dt.date, float | None]],
    *,
    tier: Tier,
    thresholds: QualityThresholds,
    policy: IncidentPolicy,
    tenant_id: uuid.UUID,
    canonical_key: str,
) -> int:
    """How many incidents `incidents.assess` opens over one profile a day with these scores
    (oldest first): the incident rule itself, replayed, never a copy of it."""
    recent: list[ProfileOutcome] = []
    active: Incident | None = None
    previous: Incident | None = None
    opened = 0
    for day, score in scores:
        passed = quality_gate(tier, score, None, thresholds).passed
        recent = [ProfileOutcome(passed, score, None, None), *recent][: policy.open_after]
        at = dt.datetime.combine(day, dt.time(), dt.UTC)
        assessment = assess(
            tenant_id, canonical_key, tier, recent, active, previous, thresholds, policy, at
        )
        if assessment.incident is None:
            continue
        if active is None:
            opened += 1
        if assessment.incident.active:
            active = assessment.incident
        else:
            active, previous = None, assessment.incident
    return opened
