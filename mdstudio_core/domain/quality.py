"""What a profile is, and the one formula that turns warehouse counts into a quality score.

The score is the number stewards approve on and dashboards trend, so it is computed in exactly one
place (`quality_score`) from integers the warehouse counted. Arithmetic is exact (fractions) and
the entity score is rounded half-up once, at the end, so the same counts always give the same
score on every machine and the hand-computed numbers in the tests hold to the last digit.

Formula (documented in the README, tested rule by rule):

For a column with ``n`` rows, ``nn`` non-null, ``d`` distinct and ``v`` valid values:

* completeness = nn / n, scored unless the column is declared ``nullable: true``;
* uniqueness = d / nn, scored only where the column is declared ``unique: true``;
* validity = v / nn, scored only where the column has at least one value rule that applies;
* where nn = 0, uniqueness and validity are not scored; where n = 0, nothing is scored;
* column score = weighted mean of its scored dimensions (weights 0.4 / 0.3 / 0.3 by default),
  renormalised over the dimensions scored;
* entity ``quality_score`` = 100 x mean of the scores of its columns that have a scored
  dimension, rounded to 2 decimals (half up); none scored: null, and ``score_note`` says why.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mdstudio_core.domain.model import Tier, Trigger

Dimension = Literal["completeness", "uniqueness", "validity"]
DIMENSIONS: tuple[Dimension, ...] = ("completeness", "uniqueness", "validity")


class ScoreWeights(BaseModel):
    """Relative weight of each dimension in a column score. Only ratios matter: the weights are
    renormalised over the dimensions a column actually scores."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    completeness: float = 0.4
    uniqueness: float = 0.3
    validity: float = 0.3

    @model_validator(mode="after")
    def _positive(self) -> ScoreWeights:
        for name in DIMENSIONS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"weight {name} must be a positive number, got {value!r}")
        return self

    def exact(self, dimension: Dimension) -> Fraction:
        """The weight as an exact fraction of its decimal spelling (0.4 is 2/5, not a binary
        approximation), so renormalised means do not drift."""
        return Fraction(str(getattr(self, dimension)))


DEFAULT_WEIGHTS = ScoreWeights()


class ColumnProfile(BaseModel):
    """Everything measured and scored for one bound column.

    The measured part (``n`` .. ``max``) comes from the warehouse; the declared part (``nullable``,
    ``unique``, ``rules``) from the binding; the scored part is filled by `quality_score`.
    ``rules`` lists the value rules that were evaluated; a declared rule that cannot apply to the
    column's type is left out of ``rules`` and explained in ``notes``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    data_type: str | None = None
    n: int
    non_null: int
    distinct: int | None = None
    valid: int | None = None
    min: Any = None
    max: Any = None
    nullable: bool = False
    unique: bool = False
    rules: list[str] = Field(default_factory=list)
    rules_not_applied: list[str] = Field(default_factory=list)
    completeness: float | None = None
    uniqueness: float | None = None
    validity: float | None = None
    scored: list[Dimension] = Field(default_factory=list)
    score: float | None = None
    denominators: dict[str, int] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class Sample(BaseModel):
    """How the rows were chosen when the profile did not read the whole table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str
    percent: float
    rows: int


class ProfileResult(BaseModel):
    """One profile of one entity: the row of `mdm_profile` and what a steward sees in preview.
    ``sql`` has named placeholders; ``sql_params`` their JSON values, by statement (``row
    pass``, ``distinct pass``) and name (saved in the row's ``details``).

    How it was taken: ``mode`` (``full``, or ``incremental``: only the rows at or above
    ``watermark_before`` were read and merged, see `domain.incremental`), the window
    (``watermark_before``, ``watermark_after``, ISO 8601 for times), ``rows_read`` (the rows its
    statements read from the table), ``full_reason`` (why a full profile ran on a table bound
    incrementally) and ``probes`` (per column declared unique, how new values were checked
    against the earlier rows: ``index``, ``scan``, ``range`` or ``constraint``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    canonical_key: str
    tenant_id: uuid.UUID | None = None
    source: str
    table: str
    quality_score: float | None
    completeness: float | None
    uniqueness: float | None
    validity: float | None
    row_count: int
    columns: list[ColumnProfile]
    score_note: str | None = None
    warnings: list[str] = Field(default_factory=list)
    trigger: Trigger = Trigger.MANUAL
    approval_id: uuid.UUID | None = None
    sql: str
    sql_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sample: Sample | None = None
    duration_ms: int
    profiled_at: dt.datetime
    mode: Literal["full", "incremental"] = "full"
    watermark_before: str | None = None
    watermark_after: str | None = None
    rows_read: int | None = None
    full_reason: str | None = None
    probes: dict[str, str] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class StoredProfile:
    """A saved profile (a row of `mdm_profile`): one entity, one run."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    entity_urn: str
    canonical_key: str
    quality_score: float | None
    completeness: float | None
    uniqueness: float | None
    validity: float | None
    row_count: int | None
    columns: list[dict[str, Any]] | None
    score_note: str | None
    details: dict[str, Any] | None
    trigger: str | None
    approval_id: uuid.UUID | None
    run_id: str | None
    sql: str | None
    sample: dict[str, Any] | None
    duration_ms: int | None
    created_at: dt.datetime
    mode: str | None = None
    watermark_before: str | None = None
    watermark_after: str | None = None
    rows_read: int | None = None
    full_reason: str | None = None


class ScoreSummary(BaseModel):
    """What `quality_score` returns: the scored columns and the entity-level numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quality_score: float | None
    completeness: float | None
    uniqueness: float | None
    validity: float | None
    columns: list[ColumnProfile]
    score_note: str | None = None


def _round_half_up(value: Fraction, places: int = 2) -> float:
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return float(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def quality_score(
    columns: Sequence[ColumnProfile], weights: ScoreWeights = DEFAULT_WEIGHTS
) -> ScoreSummary:
    """Score measured columns by the documented formula; the only place the formula lives.

    Takes columns whose counts are measured (``n``, ``non_null``, ``distinct``, ``valid``) and
    whose declarations are set (``nullable``, ``unique``, ``rules``), and returns them with each
    dimension's value, the dimensions scored, the denominators used, the column score and notes on
    what was not scored, plus the entity score, the dimension means and, when nothing could be
    scored, the reason.
    """
    scored_columns: list[ColumnProfile] = []
    column_scores: list[Fraction] = []
    per_dimension: dict[Dimension, list[Fraction]] = {d: [] for d in DIMENSIONS}

    for column in columns:
        n, nn = column.n, column.non_null
        values: dict[Dimension, Fraction] = {}
        denominators: dict[str, int] = {}
        notes = [note for note in column.notes]
        if n == 0:
            notes.append("not scored: table is empty")
        else:
            if column.nullable:
                notes.append("completeness not scored: column is declared nullable")
            else:
                values["completeness"] = Fraction(nn, n)
                denominators["completeness"] = n
            if column.unique:
                if nn == 0:
                    notes.append("uniqueness not scored: no non-null values")
                else:
                    values["uniqueness"] = Fraction(column.distinct, nn)
                    denominators["uniqueness"] = nn
            if column.rules:
                if nn == 0:
                    notes.append("validity not scored: no non-null values")
                elif column.valid is None:
                    notes.append("validity not scored: valid count not measured")
                else:
                    values["validity"] = Fraction(column.valid, nn)
                    denominators["validity"] = nn
            elif column.rules_not_applied:
                notes.append(
                    "validity not scored: a declared value rule cannot apply to this column"
                )

        score: Fraction | None = None
        if values:
            total_weight = sum(weights.exact(d) for d in values)
            score = sum(weights.exact(d) * v for d, v in values.items()) / total_weight
            column_scores.append(score)
            for d, v in values.items():
                per_dimension[d].append(v)
        elif n > 0:
            notes.append("column not scored: no dimension applies (nullable, no unique, no rules)")

        scored_columns.append(
            column.model_copy(
                update={
                    "completeness": _as_float(values.get("completeness")),
                    "uniqueness": _as_float(values.get("uniqueness")),
                    "validity": _as_float(values.get("validity")),
                    "scored": [d for d in DIMENSIONS if d in values],
                    "score": _as_float(score),
                    "denominators": denominators,
                    "notes": notes,
                }
            )
        )

    means = {
        d: (_as_float(sum(vals, Fraction(0)) / len(vals)) if vals else None)
        for d, vals in per_dimension.items()
    }
    note: str | None = None
    entity_score: float | None = None
    if column_scores:
        entity_score = _round_half_up(100 * sum(column_scores, Fraction(0)) / len(column_scores))
    elif not columns:
        note = "no columns bound"
    elif all(c.n == 0 for c in columns):
        note = "table is empty"
    else:
        note = (
            "no column has a scored dimension (every column is nullable without unique or "
            "value rules, or has no non-null values)"
        )
    return ScoreSummary(
        quality_score=entity_score,
        completeness=means["completeness"],
        uniqueness=means["uniqueness"],
        validity=means["validity"],
        columns=scored_columns,
        score_note=note,
    )


def _as_float(value: Fraction | None) -> float | None:
    return None if value is None else float(value)


# -- the quality gate ------------------------------------------------------------------------
# What a score means per tier: the Dagster check, `profiles preview` and alerts all ask here.


class Severity(StrEnum):
    ERROR = "ERROR"
    WARN = "WARN"


SEVERITY: dict[Tier, Severity] = {
    Tier.TIER1: Severity.ERROR,
    Tier.TIER2: Severity.WARN,
    Tier.TIER3: Severity.WARN,
}


@dataclass(frozen=True)
class QualityThresholds:
    """Minimum quality scores per tier (`MDSTUDIO_TIER1_MIN_SCORE`, `MDSTUDIO_TIER2_MIN_SCORE`);
    tier3 has none: it is informational."""

    tier1_min_score: float = 80.0
    tier2_min_score: float = 70.0

    def minimum(self, tier: Tier) -> float | None:
        return {Tier.TIER1: self.tier1_min_score, Tier.TIER2: self.tier2_min_score}.get(tier)


class CheckVerdict(BaseModel):
    """The gate's answer for one profile: the `quality_score_threshold` check's result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    passed: bool
    severity: Severity
    tier: Tier
    quality_score: float | None
    threshold: float | None
    description: str


def quality_gate(
    tier: Tier, score: float | None, score_note: str | None, thresholds: QualityThresholds
) -> CheckVerdict:
    """tier1 below its minimum fails with ERROR, tier2 with WARN; tier3 is informational and
    always passes. A profile that could not be scored fails a tier1/tier2 check: an unscored
    governed field is not a healthy one."""
    minimum = thresholds.minimum(tier)
    if minimum is None:
        passed, description = True, f"{tier.value}: informational, score {score}"
    elif score is None:
        passed, description = False, f"not scored ({score_note or 'no scored column'})"
    else:
        passed = score >= minimum
        verb = "meets" if passed else "is below"
        description = f"score {score:g} {verb} the {tier.value} minimum {minimum:g}"
    return CheckVerdict(
        passed=passed,
        severity=SEVERITY[tier],
        tier=tier,
        quality_score=score,
        threshold=minimum,
        description=description,
    )
