"""Incremental profiling: what a profile keeps of a table between passes, when a pass may read
only the rows it has not counted, and how the counts merge so that the result is exactly what a
full profile of the table would give.

A binding declares `binding.incremental`: rows arrive with a non-decreasing value in one column.
After a pass, the table's rows split at the watermark `W` (the largest value then present):

* *settled* rows, with a value below `W` (or none): the state holds their counts;
* the *frontier*, the rows at `W`: counted in the profile, never in the state, because more
  rows may still arrive with that same value (a load timestamp shared by a batch, a date).

The next pass reads the rows at or above `W` only, checks that the settled rows are still the
rows the state counted (the safety net, `adapters.incremental`), and merges. Counts, non-null and
valid counts add up; min and max merge; a column declared `unique` keeps its distinct count
exact: the new values already present among the settled rows are found by a probe, not guessed.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

Mode = Literal["full", "incremental"]
FULL: Mode = "full"
INCREMENTAL: Mode = "incremental"
STATE_FORMAT = 1


class MergeError(ValueError):
    """Two values of one column cannot be ordered against each other (SQLite lets a column
    hold a text beside a number); their min and max cannot be merged."""


# -- values as JSON ----------------------------------------------------------------------------
# The state keeps min, max and the watermark as the warehouse returned them: a Decimal stays a
# Decimal and a date-time keeps its zone, so a merge compares what a full profile compares.


def encode(value: Any) -> Any:
    """A warehouse value as JSON that `decode` turns back into the same value and type."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else ["float", repr(value)]
    if isinstance(value, Decimal):
        return ["decimal", str(value)]
    if isinstance(value, dt.datetime):
        return ["datetime", value.isoformat()]
    if isinstance(value, dt.date):
        return ["date", value.isoformat()]
    if isinstance(value, dt.time):
        return ["time", value.isoformat()]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, uuid.UUID):
        return ["uuid", str(value)]
    raise TypeError(f"cannot keep a {type(value).__name__} in a profile state")


_DECODERS = {
    "float": float,
    "decimal": Decimal,
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "bytes": bytes.fromhex,
    "uuid": uuid.UUID,
}


def decode(raw: Any) -> Any:
    if isinstance(raw, list):
        kind, text = raw
        return _DECODERS[kind](text)
    return raw


def iso(value: Any) -> str | None:
    """A watermark as a profile records it: ISO 8601 for dates and times, else its text."""
    if value is None:
        return None
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def _order(value: Any) -> tuple[int, Any]:
    """Sort key with the warehouse's order: NaN above every number, as PostgreSQL sorts it."""
    if isinstance(value, float | Decimal) and value != value:
        return (1, 0)
    return (0, value)


def lowest(values: Iterable[Any]) -> Any:
    present = [value for value in values if value is not None]
    try:
        return min(present, key=_order, default=None)
    except TypeError as exc:
        raise MergeError(str(exc)) from exc


def highest(values: Iterable[Any]) -> Any:
    present = [value for value in values if value is not None]
    try:
        return max(present, key=_order, default=None)
    except TypeError as exc:
        raise MergeError(str(exc)) from exc


def disjoint(low: Any, high: Any, settled_low: Any, settled_high: Any) -> bool:
    """True when every value in [low, high] lies outside [settled_low, settled_high] (or
    nothing is settled): no new value can already occur among the settled rows."""
    if settled_low is None or low is None:
        return True
    try:
        return _order(low) > _order(settled_high) or _order(high) < _order(settled_low)
    except TypeError:
        return False


# -- counts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """The mergeable counts of one bound column (with one set of rules) over some rows.
    `distinct` is kept only where uniqueness is scored (`unique: true`)."""

    non_null: int = 0
    valid: int | None = None
    min: Any = None
    max: Any = None
    distinct: int | None = None

    def plus(self, other: Counts) -> Counts:
        """The counts of both sets of rows; `distinct` is left to the caller (values can occur
        in both sets, which only a probe can tell)."""
        return Counts(
            non_null=self.non_null + other.non_null,
            valid=_add(self.valid, other.valid),
            min=lowest((self.min, other.min)),
            max=highest((self.max, other.max)),
            distinct=self.distinct,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "non_null": self.non_null,
            "valid": self.valid,
            "min": encode(self.min),
            "max": encode(self.max),
            "distinct": self.distinct,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Counts:
        return cls(
            non_null=raw["non_null"],
            valid=raw["valid"],
            min=decode(raw["min"]),
            max=decode(raw["max"]),
            distinct=raw["distinct"],
        )


def _add(a: int | None, b: int | None) -> int | None:
    if a is None and b is None:
        return None
    return (a or 0) + (b or 0)


def total(counts: Sequence[Counts]) -> Counts:
    """Counts of disjoint sets of rows added up (distinct left unset)."""
    out = Counts()
    for item in counts:
        out = out.plus(item)
    return replace(out, distinct=None)


# -- the state ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    """What the safety net compares: the settled rows' count and their incremental values'
    min and max, a checksum of their bound columns where the warehouse
    cannot vouch for them otherwise, and PostgreSQL's change counters for the table."""

    rows: int = 0
    inc_min: Any = None
    inc_max: Any = None
    checksum: tuple[str, ...] | None = None
    statistics: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "inc_min": encode(self.inc_min),
            "inc_max": encode(self.inc_max),
            "checksum": list(self.checksum) if self.checksum is not None else None,
            "statistics": dict(self.statistics) if self.statistics is not None else None,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Settled:
        checksum = raw.get("checksum")
        return cls(
            rows=raw["rows"],
            inc_min=decode(raw["inc_min"]),
            inc_max=decode(raw["inc_max"]),
            checksum=tuple(checksum) if checksum is not None else None,
            statistics=raw.get("statistics"),
        )


@dataclass(frozen=True)
class TableState:
    """What a profile keeps of one table (per tenant) between passes: the incremental
    declaration and the bound column rules it was taken with (`specs`: each rule set's JSON),
    the column types, the watermark, the settled rows' safety-net figures and each rule set's
    counts over the settled rows, and when the last full profile ran."""

    incremental: Mapping[str, Any]
    specs: tuple[str, ...]
    types: Mapping[str, str]
    watermark: Any
    settled: Settled
    columns: Mapping[str, Counts]
    last_full_at: dt.datetime
    format: int = STATE_FORMAT

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "incremental": dict(self.incremental),
            "specs": list(self.specs),
            "types": dict(self.types),
            "watermark": encode(self.watermark),
            "settled": self.settled.to_json(),
            "columns": {spec: counts.to_json() for spec, counts in self.columns.items()},
            "last_full_at": self.last_full_at.isoformat(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TableState:
        return cls(
            incremental=raw["incremental"],
            specs=tuple(raw["specs"]),
            types=raw["types"],
            watermark=decode(raw["watermark"]),
            settled=Settled.from_json(raw["settled"]),
            columns={spec: Counts.from_json(c) for spec, c in raw["columns"].items()},
            last_full_at=dt.datetime.fromisoformat(raw["last_full_at"]),
            format=raw.get("format", STATE_FORMAT),
        )


# -- when a pass must be full -------------------------------------------------------------------


@dataclass(frozen=True)
class PassRequest:
    """What a pass is asked to do, before the warehouse is read."""

    incremental: Mapping[str, Any]
    specs: tuple[str, ...]
    now: dt.datetime
    full_every_days: float
    forced: bool = False
    sampled: bool = False


def full_reason(state: TableState | None, request: PassRequest) -> str | None:
    """Why this pass must read the whole table, or None when it may read only the new rows
    (the safety net may still find a reason in the warehouse)."""
    if request.sampled:
        return "the tier samples (MDSTUDIO_<TIER>_SAMPLE_PERCENT); a sample is not merged"
    if request.forced:
        return "asked for (mdstudio profiles run --full)"
    if state is None:
        return "first profile of this table with binding.incremental"
    if state.format != STATE_FORMAT:
        return "the profile state was kept by another version of mdstudio"
    if dict(state.incremental) != dict(request.incremental):
        return (
            f"binding.incremental changed ({_declared(state.incremental)} -> "
            f"{_declared(request.incremental)})"
        )
    if set(state.specs) != set(request.specs):
        return "the bound columns or their rules changed"
    age = request.now - state.last_full_at
    if age.total_seconds() >= request.full_every_days * 86_400:
        return (
            f"the last full profile ({state.last_full_at.isoformat()}) is older than "
            f"MDSTUDIO_FULL_PROFILE_EVERY_DAYS ({request.full_every_days:g})"
        )
    return None


def _declared(incremental: Mapping[str, Any]) -> str:
    partition = incremental.get("partition")
    return str(incremental.get("column")) + (f", partition {partition}" if partition else "")


@dataclass(frozen=True)
class DayCounts:
    """One day's rows (by the incremental column's date, in UTC): the row count and each rule
    set's counts, `distinct` within the day where uniqueness is scored."""

    day: dt.date
    row_count: int
    columns: Mapping[str, Counts] = field(default_factory=dict)


@dataclass(frozen=True)
class DaysRead:
    """The days a pass read whole: every day (`since` None: a full pass, or the first one),
    or every day from `since` on and the `recounted` ones (a backfill). A day among them that
    the pass found no row for has none now (its rows were moved or deleted): its stored counts
    go."""

    since: dt.date | None = None
    recounted: frozenset[dt.date] = frozenset()


@dataclass(frozen=True)
class ProfileDay:
    """One day of a field, as `mdstudio profiles days` shows it: the row count, the score of
    the day's rows alone, and per column its counts and dimensions."""

    day: dt.date
    row_count: int
    quality_score: float | None
    columns: Mapping[str, Any]
    profile_id: uuid.UUID | None = None
    updated_at: dt.datetime | None = None
    tier: str | None = None  # the field's tier when the day was counted (not stored)

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "row_count": self.row_count,
            "quality_score": self.quality_score,
            "columns": dict(self.columns),
        }
