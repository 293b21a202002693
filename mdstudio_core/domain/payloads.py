"""What a steward submits, validated before anything touches the store: entity payloads,
bindings and approval requests.

A bad request fails with an error naming its field and writes nothing. Identifiers that later
reach a warehouse query (source, schema, table, column names) are restricted to plain SQL
identifiers: no quoting tricks, no whitespace, nothing that could be read as SQL.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mdstudio_core.domain.enums import EntityStatus, EntityType, Lane, Tier
from mdstudio_core.domain.patterns import check_pattern

CANONICAL_KEY_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$"
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Glossary terms are human words ("Gross Revenue", "Customer's Region"), not SQL identifiers.
TERM_PATTERN = r"^[\w][\w .'&/()+-]*$"
DATA_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\(\d+(,\s*\d+)?\))?$"

CanonicalKey = Annotated[
    str, StringConstraints(pattern=CANONICAL_KEY_PATTERN, min_length=1, max_length=200)
]
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN, max_length=63)]
GlossaryTerm = Annotated[
    str,
    StringConstraints(pattern=TERM_PATTERN, min_length=1, max_length=200, strip_whitespace=True),
]
Text = Annotated[str, StringConstraints(max_length=10_000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Owner = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
DataType = Annotated[str, StringConstraints(pattern=DATA_TYPE_PATTERN, max_length=50)]
Scalar = str | int | float | bool


# Validation context of data read back from the store (`stored_binding`).
STORED = "stored"


def _accepted_pattern(pattern: str, info: ValidationInfo) -> str:
    """A pattern must be in the accepted language (`patterns.check_pattern`). A binding read
    back from the store was accepted by the rules of its day and is not refused on reading (that
    would make the entity unreadable); profiling it refuses the pattern, naming its column."""
    if info.context and info.context.get(STORED):
        return pattern
    return check_pattern(pattern)


Regex = Annotated[
    str, StringConstraints(min_length=1, max_length=1000), AfterValidator(_accepted_pattern)
]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date_stays_a_date(value: Any) -> Any:
    """A ``YYYY-MM-DD`` string is a date; any other date-time string is left to the union,
    which (date-time first) keeps its time and zone. Left alone, pydantic would read
    ``2024-01-01T00:00:00+02:00`` as the date 2024-01-01, dropping the time and the zone."""
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        return dt.date.fromisoformat(value)
    return value


# A min/max bound: a number, a date, or a date-time (with or without a time zone).
Bound = Annotated[int | float | dt.datetime | dt.date, BeforeValidator(_date_stays_a_date)]


def _kind(bound: int | float | dt.date) -> str:
    """What kind of bound this is, in the words the refusal uses."""
    if isinstance(bound, dt.datetime):
        return "a date-time with a time zone" if bound.tzinfo else "a date-time without a time zone"
    return "a date" if isinstance(bound, dt.date) else "a number"


class _Strict(BaseModel):
    """Unknown fields are errors: a typo such as `nulable` must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnRule(_Strict):
    """A bound warehouse column and the value rules its data must satisfy."""

    name: Identifier
    nullable: bool = False
    unique: bool = False
    pattern: Regex | None = None
    allowed_values: Annotated[list[Scalar], Field(min_length=1, max_length=1000)] | None = None
    min: Bound | None = None
    max: Bound | None = None

    @field_validator("max")
    @classmethod
    def _min_not_above_max(cls, high: Bound | None, info: ValidationInfo) -> Bound | None:
        """Bounds of one kind, in order. A zoned date-time beside a naive one is refused: which
        instant the naive one means is unknown, and Python cannot even order the two."""
        low = info.data.get("min")
        if low is None or high is None:
            return high
        if _kind(low) != _kind(high):
            raise ValueError(
                f"min is {_kind(low)} and max is {_kind(high)}: both must be numbers, both "
                "dates, or both date-times, with a time zone on both or on neither"
            )
        if low > high:  # type: ignore[operator]
            raise ValueError("min must not be greater than max")
        return high

    @property
    def value_rules(self) -> list[str]:
        """The rules that decide whether a non-null value is valid."""
        return [
            rule
            for rule in ("pattern", "allowed_values", "min", "max")
            if getattr(self, rule) is not None
        ]


class Incremental(_Strict):
    """How a table grows: rows are appended with a non-decreasing value in `column` (a load
    timestamp or a sequence), so a profile can read only the rows above the last one it counted.
    `partition: day` when the column is a date or date-time and the table is naturally daily:
    each day's counts are kept, and the table's asset is daily-partitioned in Dagster."""

    column: Identifier
    partition: Literal["day"] | None = None


class Binding(_Strict):
    """Where an entity lives in a warehouse. `source` names a connection configured outside the
    catalog (credentials never live here)."""

    source: Identifier = "warehouse"
    schema_: Identifier | None = Field(default=None, alias="schema")
    table: Identifier
    columns: Annotated[list[ColumnRule], Field(min_length=1, max_length=500)]
    incremental: Incremental | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _columns_unique(self) -> Binding:
        names = [column.name.lower() for column in self.columns]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"column listed more than once: {', '.join(duplicates)}")
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def stored_binding(raw: Mapping[str, Any]) -> Binding:
    """A binding read back from the store (see `_accepted_pattern`)."""
    return Binding.model_validate(raw, context={STORED: True})


class GlobalMetadataPayload(_Strict):
    canonical_key: CanonicalKey
    label: Name
    description: Text
    tier: Tier
    domain: Name
    owner: Owner
    data_type: DataType
    binding: Binding | None = None
    status: EntityStatus = EntityStatus.ACTIVE


class KpiPayload(_Strict):
    canonical_key: CanonicalKey
    name: Name
    description: Text = ""
    expression: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    depends_on: Annotated[list[CanonicalKey], Field(max_length=500)] = []
    tier: Tier
    owner: Owner
    status: EntityStatus = EntityStatus.ACTIVE


class BusinessRulePayload(_Strict):
    canonical_key: CanonicalKey
    name: Name
    description: Text = ""
    expression: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    applies_to: Annotated[list[CanonicalKey], Field(max_length=500)] = []
    severity: Literal["info", "warning", "error"] = "error"
    owner: Owner
    status: EntityStatus = EntityStatus.ACTIVE


class GlossaryPayload(_Strict):
    term: GlossaryTerm
    definition: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    synonyms: Annotated[list[GlossaryTerm], Field(max_length=100)] = []
    related_keys: Annotated[list[CanonicalKey], Field(max_length=500)] = []
    owner: Owner | None = None
    status: EntityStatus = EntityStatus.ACTIVE


PAYLOAD_MODELS: dict[EntityType, type[_Strict]] = {
    EntityType.GLOBAL_METADATA: GlobalMetadataPayload,
    EntityType.KPI: KpiPayload,
    EntityType.BUSINESS_RULE: BusinessRulePayload,
    EntityType.GLOSSARY: GlossaryPayload,
}

# The payload field that carries the entity's identity. A glossary entry is keyed by its term
# unless the request names a key of its own.
KEY_FIELD: dict[EntityType, str] = {
    EntityType.GLOBAL_METADATA: "canonical_key",
    EntityType.KPI: "canonical_key",
    EntityType.BUSINESS_RULE: "canonical_key",
    EntityType.GLOSSARY: "term",
}

# Fields whose change alters what a profile measures; anything else (label, description, owner)
# is editorial and triggers no profiling.
STRUCTURAL_FIELDS: dict[EntityType, frozenset[str]] = {
    EntityType.GLOBAL_METADATA: frozenset({"binding", "data_type"}),
    EntityType.KPI: frozenset({"expression", "depends_on"}),
    EntityType.BUSINESS_RULE: frozenset({"expression", "applies_to"}),
    EntityType.GLOSSARY: frozenset(),
}


class ApprovalRequest(_Strict):
    """What a steward submits: the full new state of one entity, on a lane, at a tier."""

    entity_type: EntityType
    entity_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    tier: Tier
    lane: Lane
    payload: dict[str, Any]

    @field_validator("entity_type")
    @classmethod
    def _a_catalog_type(cls, entity_type: EntityType) -> EntityType:
        """A change set is a list of requests, not a request (`POST /change-sets`)."""
        if entity_type is EntityType.CHANGE_SET:
            raise ValueError(
                "a change set is submitted as a list of requests (POST /change-sets, or "
                "mdstudio approvals submit --file changes.jsonl|changes.csv)"
            )
        return entity_type
