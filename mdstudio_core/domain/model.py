"""The governed catalog's vocabulary: enums, entity payloads, bindings and approval requests.

Everything a steward submits is validated here, before anything touches the store, so a bad
request fails with an error naming its field and writes nothing. Identifiers that later reach a
warehouse query (source, schema, table, column names) are restricted to plain SQL identifiers:
no quoting tricks, no whitespace, nothing that could be read as SQL.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
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

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.patterns import check_pattern


class EntityType(StrEnum):
    GLOBAL_METADATA = "GLOBAL_METADATA"
    KPI = "KPI"
    BUSINESS_RULE = "BUSINESS_RULE"
    GLOSSARY = "GLOSSARY"
    # Not a catalog entity: the subject of a change set's approval request, whose items are
    # ordinary requests (`domain/change_sets.py`).
    CHANGE_SET = "CHANGE_SET"


# The types the catalog keeps live entities of (every type but CHANGE_SET).
CATALOG_ENTITY_TYPES = tuple(t for t in EntityType if t is not EntityType.CHANGE_SET)


class Tier(StrEnum):
    TIER1 = "tier1"
    TIER2 = "tier2"
    TIER3 = "tier3"


class Lane(StrEnum):
    KERNEL = "kernel"
    GOVERNED = "governed"
    DRAFT = "draft"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class EntityStatus(StrEnum):
    ACTIVE = "active"
    DRAFT = "draft"
    DEPRECATED = "deprecated"


class Trigger(StrEnum):
    """What asked for a profile; recorded on it."""

    APPROVAL = "approval"
    SCHEDULE = "schedule"
    MANUAL = "manual"
    PREVIEW = "preview"


class ProfileReason(StrEnum):
    """Why a profile is due."""

    STRUCTURAL = "STRUCTURAL"
    KPI_DEPENDENCY = "KPI_DEPENDENCY"
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"


class Priority(StrEnum):
    """How soon a due profile runs: tier1 approvals and manual requests first."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _PRIORITY_ORDER.index(self)

    @classmethod
    def highest(cls, priorities: Iterable[Priority]) -> Priority:
        return min(priorities, key=lambda priority: priority.rank)


_PRIORITY_ORDER = (Priority.HIGH, Priority.NORMAL, Priority.LOW)


class SkipReason(StrEnum):
    """Why a due profile was not run (a cost guard)."""

    COST_GUARD = "COST_GUARD"
    NO_BINDING = "NO_BINDING"


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


def entity_urn(tenant_id: uuid.UUID | str, canonical_key: str) -> str:
    """The stable name of a governed field across systems (profiles, Dagster, lineage)."""
    return f"urn:mdstudio:{tenant_id}:metadata:{canonical_key}"


@dataclass(frozen=True)
class Identity:
    """Who is acting: a user of one tenant holding some roles. Fixed by the caller's credentials."""

    tenant_id: uuid.UUID
    user: str
    roles: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ApiToken:
    """An API token's record (never its secret, nor its hash): it fixes tenant, user and roles
    until it expires or is revoked."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    user: str
    roles: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def live_at(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def identity(self) -> Identity:
        return Identity(tenant_id=self.tenant_id, user=self.user, roles=frozenset(self.roles))


# Fields every live entity carries besides its governed state.
BOOKKEEPING_FIELDS = ("id", "tenant_id", "version", "updated_at", "updated_by")


@dataclass(frozen=True)
class LiveEntity:
    """One live catalog entity, typed. `state` holds its governed fields in JSON form (what an
    approval's payload carries and what approvals compare); the fields every service needs are
    typed beside it."""

    entity_type: EntityType
    id: uuid.UUID
    tenant_id: uuid.UUID
    canonical_key: str
    tier: Tier
    status: EntityStatus
    version: int
    updated_at: dt.datetime
    updated_by: str
    state: Mapping[str, Any]
    binding: Binding | None = None

    @property
    def depends_on(self) -> tuple[str, ...]:
        """The metadata keys a KPI is computed from (empty for other types)."""
        return tuple(self.state.get("depends_on") or ())

    @property
    def profiled(self) -> bool:
        """Bound and not deprecated: something to profile."""
        return self.binding is not None and self.status is not EntityStatus.DEPRECATED

    def as_dict(self) -> dict[str, Any]:
        """The flat JSON form shown by `metadata show` and `GET /metadata/{key}`, and kept as an
        approval's `current_state`."""
        return {
            "id": str(self.id),
            "tenant_id": str(self.tenant_id),
            **self.state,
            "version": self.version,
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


# Schemas no binding may read, whatever the source allows: the warehouse's own catalogs.
# PostgreSQL reserves every schema name starting with `pg_` (pg_catalog, pg_toast, pg_temp_N).
SYSTEM_SCHEMA_PREFIXES = ("pg_",)
SYSTEM_SCHEMAS = frozenset({"information_schema"})
SYSTEM_TABLE_PREFIXES = ("sqlite_",)  # SQLite's own tables (sqlite_master, sqlite_sequence)


@dataclass(frozen=True)
class SourceAccess:
    """Who may bind a warehouse source, and where: the operator decides, outside the catalog
    (`MDSTUDIO_SOURCE_<NAME>_TENANTS`, `..._SCHEMAS`). Unset tenants: every tenant (a
    single-tenant deployment); unset schemas: any schema but the system's."""

    source: str
    tenants: frozenset[uuid.UUID] | None = None
    schemas: frozenset[str] | None = None

    def refusal(self, binding: Binding, tenant_id: uuid.UUID) -> tuple[str, str] | None:
        """Why `tenant_id` may not bind `binding` to this source, as (field, reason), or None."""
        variable = f"MDSTUDIO_SOURCE_{self.source.upper()}"
        if self.tenants is not None and tenant_id not in self.tenants:
            return (
                "payload.binding.source",
                f"source {self.source!r} is not open to this tenant ({variable}_TENANTS)",
            )
        schema = binding.schema_
        if schema is not None and (
            schema.lower() in SYSTEM_SCHEMAS or schema.lower().startswith(SYSTEM_SCHEMA_PREFIXES)
        ):
            return "payload.binding.schema", f"{schema} is a system schema; no binding reads it"
        if binding.table.lower().startswith(SYSTEM_TABLE_PREFIXES):
            return (
                "payload.binding.table",
                f"{binding.table} is a system table; no binding reads it",
            )
        if self.schemas is not None and schema not in self.schemas:
            allowed = ", ".join(sorted(self.schemas))
            return (
                "payload.binding.schema",
                f"source {self.source!r} allows the schemas {allowed} ({variable}_SCHEMAS); "
                "name one of them",
            )
        return None


# Where a scheduled pass's planning stands: the last table planned, as pages order tables
# (tenant id, source, schema or "", table).
TablePosition = tuple[str, str, str, str]


@dataclass(frozen=True)
class ProfilePass:
    """A scheduled profiling pass: one tier's schedule at one slot (`2026-11-26T02:00`), planned
    a page of tables at a time so no tick's work grows with the catalog."""

    id: int
    schedule: str
    tier: Tier
    slot: str
    requested_at: dt.datetime
    planned_through: TablePosition | None = None
    tables_planned: int = 0
    runs_requested: int = 0
    finished_at: dt.datetime | None = None


@dataclass(frozen=True)
class PassProgress:
    """How far the orchestrator's committed ticks planned a pass (its cursor)."""

    pass_id: int
    planned_through: TablePosition | None = None
    tables_planned: int = 0
    runs_requested: int = 0
    finished: bool = False


@dataclass(frozen=True)
class StoreTimeouts:
    """Bounds on the metadata store (PostgreSQL): how long one statement may run and how long it
    may wait for a lock. A stuck lock or a runaway query then fails its request, naming the
    bound, instead of hanging it and the connection it holds."""

    statement_s: float
    lock_s: float


@dataclass(frozen=True)
class ProfileLimits:
    """Limits for big tables, set per tier: a statement timeout (a clear failure when exceeded,
    never a partial profile) and optional sampling (PostgreSQL ``TABLESAMPLE SYSTEM``)."""

    timeout_s: float | None = 600.0
    sample_percent: float | None = None

    @classmethod
    def shared(cls, chosen: Iterable[ProfileLimits]) -> ProfileLimits:
        """The limits for a table shared by entities of several tiers: the shortest timeout,
        and sampling only when every tier samples (the smallest sample)."""
        limits = list(chosen) or [cls()]
        timeouts = [c.timeout_s for c in limits if c.timeout_s is not None]
        samples = [c.sample_percent for c in limits]
        return cls(
            timeout_s=min(timeouts) if timeouts else None,
            sample_percent=None
            if any(s is None for s in samples)
            else min(s for s in samples if s is not None),
        )

    def within(self, timeout_s: float) -> ProfileLimits:
        """These limits with a timeout of at most `timeout_s`."""
        timeout = timeout_s if self.timeout_s is None else min(self.timeout_s, timeout_s)
        return replace(self, timeout_s=timeout)


def parse_id(value: uuid.UUID | str, field: str) -> uuid.UUID:
    """An id given at an edge (CLI argument, form field): a UUID, else invalid input naming
    the field (`approval_id` reads "not a valid approval id (a UUID)")."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        what = field.replace("_", " ")
        raise InvalidInput(f"not a valid {what} (a UUID)", field=field) from exc
