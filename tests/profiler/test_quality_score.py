"""The score formula, rule by rule, with numbers computed by hand."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mdstudio_core.domain.quality import ColumnProfile, ScoreWeights, quality_score


def col(
    name: str = "c",
    *,
    n: int,
    nn: int,
    d: int = 0,
    v: int | None = None,
    nullable: bool = False,
    unique: bool = False,
    rules: list[str] | None = None,
    not_applied: list[str] | None = None,
) -> ColumnProfile:
    return ColumnProfile(
        name=name,
        n=n,
        non_null=nn,
        distinct=d,
        valid=v,
        nullable=nullable,
        unique=unique,
        rules=rules or [],
        rules_not_applied=not_applied or [],
    )


def test_completeness_only() -> None:
    # 8 of 10 present: completeness 0.8, the only dimension, score 0.8 -> 80.00
    s = quality_score([col(n=10, nn=8)])
    assert s.columns[0].completeness == 0.8
    assert s.columns[0].scored == ["completeness"]
    assert s.columns[0].denominators == {"completeness": 10}
    assert s.quality_score == 80.0
    assert (s.completeness, s.uniqueness, s.validity) == (0.8, None, None)


def test_nullable_column_scores_nothing() -> None:
    s = quality_score([col(n=10, nn=8, nullable=True)])
    assert s.columns[0].completeness is None
    assert s.columns[0].score is None
    assert s.quality_score is None
    assert "no column has a scored dimension" in (s.score_note or "")
    assert any("nullable" in note for note in s.columns[0].notes)


def test_uniqueness_only_when_declared_unique() -> None:
    # completeness 8/10, uniqueness 6/8: (0.4*0.8 + 0.3*0.75) / 0.7 = 0.545 / 0.7 = 0.778571...
    s = quality_score([col(n=10, nn=8, d=6, unique=True)])
    c = s.columns[0]
    assert c.uniqueness == 0.75 and c.denominators["uniqueness"] == 8
    assert c.score == pytest.approx(0.545 / 0.7)
    assert s.quality_score == 77.86
    # the same counts without unique: uniqueness not scored
    assert quality_score([col(n=10, nn=8, d=6)]).columns[0].uniqueness is None


def test_validity_only_with_a_value_rule() -> None:
    # completeness 0.8, validity 4/8: (0.32 + 0.15) / 0.7 = 0.671428... -> 67.14
    s = quality_score([col(n=10, nn=8, v=4, rules=["pattern"])])
    assert s.columns[0].validity == 0.5 and s.columns[0].denominators["validity"] == 8
    assert s.quality_score == 67.14
    # a valid count without a rule is not scored
    assert quality_score([col(n=10, nn=8, v=4)]).columns[0].validity is None


def test_all_three_dimensions_default_weights() -> None:
    # 0.4*0.8 + 0.3*0.75 + 0.3*0.5 = 0.32 + 0.225 + 0.15 = 0.695 -> 69.50
    s = quality_score([col(n=10, nn=8, d=6, v=4, unique=True, rules=["min", "max"])])
    assert s.columns[0].scored == ["completeness", "uniqueness", "validity"]
    assert s.columns[0].score == pytest.approx(0.695)
    assert s.quality_score == 69.5


def test_renormalised_over_scored_dimensions() -> None:
    # nullable: (0.3*0.75 + 0.3*0.5) / 0.6 = 0.625 -> 62.50
    s = quality_score([col(n=10, nn=8, d=6, v=4, nullable=True, unique=True, rules=["min"])])
    assert s.columns[0].scored == ["uniqueness", "validity"]
    assert s.quality_score == 62.5


def test_no_non_null_values_skips_uniqueness_and_validity() -> None:
    # n=5, nn=0: completeness 0 is scored, uniqueness and validity are not
    s = quality_score([col(n=5, nn=0, unique=True, rules=["pattern"], v=0)])
    c = s.columns[0]
    assert c.scored == ["completeness"] and c.completeness == 0.0
    assert c.uniqueness is None and c.validity is None
    assert s.quality_score == 0.0
    # nullable as well: nothing is left to score
    s = quality_score([col(n=5, nn=0, nullable=True, unique=True, rules=["pattern"], v=0)])
    assert s.quality_score is None


def test_empty_table_scores_nothing() -> None:
    s = quality_score([col("a", n=0, nn=0, unique=True, rules=["min"], v=0), col("b", n=0, nn=0)])
    assert s.quality_score is None
    assert s.score_note == "table is empty"
    assert all(c.scored == [] for c in s.columns)
    assert (s.completeness, s.uniqueness, s.validity) == (None, None, None)


def test_entity_score_is_mean_of_scored_columns_only() -> None:
    # a: 0.8 (completeness); b: validity 1/4 with nullable -> 0.25; c: nothing scored
    # mean(0.8, 0.25) = 0.525 -> 52.50; dimension means: completeness 0.8, validity 0.25
    s = quality_score(
        [
            col("a", n=10, nn=8),
            col("b", n=10, nn=4, v=1, nullable=True, rules=["allowed_values"]),
            col("c", n=10, nn=3, nullable=True),
        ]
    )
    assert [c.score for c in s.columns] == [0.8, 0.25, None]
    assert s.quality_score == 52.5
    assert (s.completeness, s.uniqueness, s.validity) == (0.8, None, 0.25)


def test_dimension_means_average_the_columns_that_score_them() -> None:
    # completeness: a 1.0, b 0.5 -> 0.75; uniqueness: a only 0.5
    s = quality_score([col("a", n=4, nn=4, d=2, unique=True), col("b", n=4, nn=2)])
    assert s.completeness == 0.75 and s.uniqueness == 0.5
    # a: (0.4*1 + 0.3*0.5)/0.7 = 0.55/0.7 = 0.785714..., b: 0.5; mean 0.642857... -> 64.29
    assert s.quality_score == 64.29


def test_custom_weights() -> None:
    # (1*0.8 + 1*0.75 + 2*0.5) / 4 = 2.55 / 4 = 0.6375 -> 63.75
    weights = ScoreWeights(completeness=1, uniqueness=1, validity=2)
    s = quality_score([col(n=10, nn=8, d=6, v=4, unique=True, rules=["min"])], weights)
    assert s.quality_score == 63.75


def test_weights_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        ScoreWeights(validity=0)
    with pytest.raises(ValidationError):
        ScoreWeights(completeness=float("nan"))


def test_rounding_is_half_up_on_exact_values() -> None:
    # 3 / 20000 = 0.00015 exactly -> 0.015 -> 0.02 (binary float rounding would give 0.01)
    assert round(100 * 3 / 20000, 2) == 0.01
    assert quality_score([col(n=20000, nn=3)]).quality_score == 0.02


def test_rounding_is_half_up_where_half_even_differs() -> None:
    # 641 / 800 = 0.80125 exactly -> 80.125: half-up 80.13, half-even (banker's) 80.12.
    from decimal import ROUND_HALF_EVEN, Decimal

    assert Decimal("80.125").quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN) == Decimal("80.12")
    assert quality_score([col(n=800, nn=641)]).quality_score == 80.13
    # and below the half: 80.1249 -> 80.12 (641 / 800 minus a hair: 64099 / 80000)
    assert quality_score([col(n=80000, nn=64099)]).quality_score == 80.12


def test_rule_that_cannot_apply_leaves_validity_unscored() -> None:
    s = quality_score([col(n=10, nn=10, not_applied=["min"])])
    c = s.columns[0]
    assert c.validity is None and c.scored == ["completeness"]
    assert any("cannot apply" in note for note in c.notes)


def test_no_columns() -> None:
    s = quality_score([])
    assert s.quality_score is None and s.score_note == "no columns bound"


def test_every_unscored_dimension_says_why_in_the_column_notes() -> None:
    """The notes are what a steward reads under a profile: each names the dimension left out and
    why, once, after the measurement's own notes."""
    measured = col("all_null", n=4, nn=0, unique=True, rules=["min"]).model_copy(
        update={"notes": ["sampled"]}
    )
    s = quality_score(
        [
            col("empty", n=0, nn=0, unique=True, rules=["min"]),
            col("optional", n=1, nn=1, nullable=True),
            measured,
            col("unmeasured", n=3, nn=3, rules=["pattern"]),
            col("cast", n=3, nn=3, not_applied=["min"]),
        ]
    )
    assert {c.name: c.notes for c in s.columns} == {
        "empty": ["not scored: table is empty"],
        "optional": [
            "completeness not scored: column is declared nullable",
            "column not scored: no dimension applies (nullable, no unique, no rules)",
        ],
        "all_null": [
            "sampled",
            "uniqueness not scored: no non-null values",
            "validity not scored: no non-null values",
        ],
        "unmeasured": ["validity not scored: valid count not measured"],
        "cast": ["validity not scored: a declared value rule cannot apply to this column"],
    }
    assert s.score_note is None


def test_the_score_note_says_why_nothing_was_scored() -> None:
    assert quality_score([]).score_note == "no columns bound"
    assert quality_score([col(n=0, nn=0)]).score_note == "table is empty"
    assert quality_score([col(n=2, nn=2, nullable=True)]).score_note == (
        "no column has a scored dimension (every column is nullable without unique or value "
        "rules, or has no non-null values)"
    )
