"""Lineage: how KPIs depend on bound fields, how far a KPI can be trusted from its inputs'
quality, and when a KPI counts as endangered.

A KPI's trust score is the lowest current quality score among its input fields, each stale one
discounted (see `kpi_trust`): a KPI is no better than its worst input. A KPI whose trust falls
below its tier's minimum is *impacted*, with the same hysteresis as quality incidents (open
after `open_after` computations below the line in a row, recovered at the minimum plus the
margin). Nothing here touches a store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.events import EVENT_SCHEMAS, EventType, NewEvent, validate_event
from mdstudio_core.domain.incidents import SYSTEM_ACTOR, IncidentPolicy
from mdstudio_core.domain.model import IDENTIFIER_PATTERN, EntityType, Tier
from mdstudio_core.domain.quality import QualityThresholds

# A stale input counts for this fraction of its score.
STALE_FACTOR = 0.8
# How old a profile may be, in schedule periods of its field's tier, before it is stale.
STALE_AFTER_PERIODS = 2
# What an unnamed tenant's label looks like (`tenant_label`), and more: `t_` then hex digits and
# underscores, so no name can be any unnamed tenant's label, whatever form labels had.
_DEFAULT_LABEL = re.compile(r"^t_[0-9a-f_]*$")


# -- tenants --------------------------------------------------------------------------------


def tenant_label(tenant_id: uuid.UUID, name: str | None) -> str:
    """What a tenant is called in Dagster (first part of its asset keys, its asset group): its
    name, else `t_` and its whole id, the id's groups last first
    (`0190a1b2-0000-7abc-8def-0123456789ab` is `t_0123456789ab_8def_7abc_0000_0190a1b2`).

    The whole id, because two tenants may then never share a label, whatever their ids; last
    group first, because that is the random part (time-ordered ids share their leading digits),
    so the labels in Dagster's lists differ where they start."""
    return name or "t_" + "_".join(reversed(str(tenant_id).split("-")))


def check_tenant_name(name: str) -> str:
    """A tenant name is an identifier (letters, digits, `_`; not starting with a digit), and
    never looks like another tenant's default label."""
    name = (name or "").strip()
    if not re.fullmatch(IDENTIFIER_PATTERN, name) or len(name) > 63:
        raise InvalidInput(
            "must be an identifier: letters, digits and _, not starting with a digit (at most "
            "63 characters)",
            field="name",
        )
    if _DEFAULT_LABEL.match(name):
        raise InvalidInput(
            "t_ followed by hex digits and _ is reserved for unnamed tenants", field="name"
        )
    return name


# -- schedules and staleness ------------------------------------------------------------------


def schedule_period(cron: str) -> dt.timedelta:
    """The period of a five-field cron schedule, as far as staleness needs it: a schedule
    restricted by day of week runs weekly, by day of month monthly, by hour daily, otherwise
    hourly (stepped fields such as `*/6` are read as their unit)."""
    minute, hour, day, _month, weekday = cron.split()
    if weekday != "*":
        return dt.timedelta(days=7)
    if day != "*":
        return dt.timedelta(days=30)
    if hour != "*" and "/" not in hour:
        return dt.timedelta(days=1)
    if minute != "*" and "/" not in minute:
        return dt.timedelta(hours=1)
    return dt.timedelta(minutes=1)


# -- the catalog as a graph --------------------------------------------------------------------


@dataclass(frozen=True)
class FieldNode:
    """A bound, active field: the columns it reads and their rules (JSON form)."""

    canonical_key: str
    tier: Tier
    owner: str | None
    data_type: str
    columns: tuple[Mapping[str, Any], ...]
    incremental: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TableNode:
    """One bound warehouse table of one tenant, with every field bound to it."""

    tenant_id: uuid.UUID
    tenant: str
    source: str
    schema: str | None
    table: str
    fields: tuple[FieldNode, ...]
    first_day: str | None = None  # of a daily table: its first day profiled (or the snapshot's)

    @property
    def daily(self) -> bool:
        """Bound with `incremental.partition: day` (by every field that declares
        `incremental`, alike): its asset is daily-partitioned in Dagster."""
        declared = {
            tuple(sorted(f.incremental.items())) for f in self.fields if f.incremental is not None
        }
        return len(declared) == 1 and dict(next(iter(declared))).get("partition") == "day"

    @property
    def label(self) -> str:
        """`source.schema.table` (`source.table` without a schema), as profiling names it."""
        return ".".join(part for part in (self.source, self.schema, self.table) if part)

    @property
    def tier(self) -> Tier:
        """The strictest tier bound to it."""
        return min(f.tier for f in self.fields)


@dataclass(frozen=True)
class KpiNode:
    """An active KPI and the fields it is computed from."""

    tenant_id: uuid.UUID
    tenant: str
    canonical_key: str
    name: str
    tier: Tier
    owner: str | None
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class CatalogSnapshot:
    """The catalog as an asset graph: what the code location builds its assets from, and hands
    to run workers (as JSON) so they rebuild the same graph without reading the store."""

    tenants: Mapping[uuid.UUID, str] = field(default_factory=dict)
    tables: tuple[TableNode, ...] = ()
    kpis: tuple[KpiNode, ...] = ()

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "tenants": {str(k): v for k, v in sorted(self.tenants.items())},
                "tables": [dataclasses.asdict(t) for t in self.tables],
                "kpis": [dataclasses.asdict(k) for k in self.kpis],
            },
            option=orjson.OPT_SORT_KEYS,
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> CatalogSnapshot:
        data = orjson.loads(text)
        return cls(
            tenants={uuid.UUID(k): v for k, v in data["tenants"].items()},
            tables=tuple(
                TableNode(
                    **{
                        **t,
                        "tenant_id": uuid.UUID(t["tenant_id"]),
                        "fields": tuple(
                            FieldNode(
                                **{**f, "tier": Tier(f["tier"]), "columns": tuple(f["columns"])}
                            )
                            for f in t["fields"]
                        ),
                    }
                )
                for t in data["tables"]
            ),
            kpis=tuple(
                KpiNode(
                    **{
                        **k,
                        "tenant_id": uuid.UUID(k["tenant_id"]),
                        "tier": Tier(k["tier"]),
                        "inputs": tuple(k["inputs"]),
                    }
                )
                for k in data["kpis"]
            ),
        )

    def table_of(self, tenant_id: uuid.UUID, canonical_key: str) -> TableNode | None:
        return self._table_by_field.get((tenant_id, canonical_key))

    @functools.cached_property
    def _table_by_field(self) -> dict[tuple[uuid.UUID, str], TableNode]:
        """Each bound field's table, the first that binds it: a lookup per KPI input, not a
        scan of every table (the code location's load at 10,000 fields spent a second here)."""
        found: dict[tuple[uuid.UUID, str], TableNode] = {}
        for table in self.tables:
            for node in table.fields:
                found.setdefault((table.tenant_id, node.canonical_key), table)
        return found


# -- trust -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputState:
    """What is known of one KPI input now: the live field (None when it does not exist), whether
    it is bound and active, and its latest profile's score and time."""

    key: str
    tier: Tier | None
    bound: bool
    quality_score: float | None = None
    profiled_at: dt.datetime | None = None
    profiled: bool = False


@dataclass(frozen=True)
class InputTrust:
    key: str
    tier: Tier | None
    quality_score: float | None
    profiled_at: dt.datetime | None
    stale: bool
    effective_score: float | None
    unscored_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        """The per-input record of `lineage` and `GET /kpis/{key}/trust`."""
        return {
            "key": self.key,
            "tier": self.tier.value if self.tier else None,
            "quality_score": self.quality_score,
            "profiled_at": self.profiled_at.isoformat() if self.profiled_at else None,
            "stale": self.stale,
        }


@dataclass(frozen=True)
class KpiTrust:
    """A KPI's trust: the lowest effective input score (None when unscored), the input that
    sets it (or, unscored, the first input that cannot be scored), and every input."""

    canonical_key: str
    tier: Tier
    trust_score: float | None
    weakest_input: str | None
    inputs: tuple[InputTrust, ...]
    computed_at: dt.datetime

    @property
    def unscored(self) -> list[InputTrust]:
        return [i for i in self.inputs if i.unscored_reason is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.canonical_key,
            "entity_type": EntityType.KPI.value,
            "tier": self.tier.value,
            "trust_score": self.trust_score,
            "weakest_input": self.weakest_input,
            "inputs": [i.as_dict() for i in self.inputs],
            "unscored_inputs": [{"key": i.key, "reason": i.unscored_reason} for i in self.unscored],
        }


def kpi_trust(
    canonical_key: str,
    tier: Tier,
    inputs: Sequence[InputState],
    periods: Mapping[Tier, dt.timedelta],
    now: dt.datetime,
) -> KpiTrust:
    """The trust function.

    * an input not found, not bound or deprecated, never profiled, or whose latest profile
      could not be scored makes the KPI unscored (`trust_score` None), and says which;
    * an input is stale when its latest profile is older than `STALE_AFTER_PERIODS` (2)
      schedule periods of its tier (`periods`; a tier without a schedule is never stale); a
      stale input counts for `STALE_FACTOR` (0.8) of its score;
    * trust = the lowest effective score, rounded to 2 decimals; the weakest input is the one
      that sets it (the first in key order on a tie). A KPI with no inputs is unscored.
    """
    judged = [_judge(state, periods, now) for state in sorted(inputs, key=lambda s: s.key)]
    unscored = [i for i in judged if i.unscored_reason is not None]
    if unscored or not judged:
        weakest = unscored[0].key if unscored else None
        return KpiTrust(canonical_key, tier, None, weakest, tuple(judged), now)
    weakest_input = min(judged, key=lambda i: i.effective_score)  # type: ignore[arg-type,return-value]
    score = round(weakest_input.effective_score or 0.0, 2)
    return KpiTrust(canonical_key, tier, score, weakest_input.key, tuple(judged), now)


def _judge(state: InputState, periods: Mapping[Tier, dt.timedelta], now: dt.datetime) -> InputTrust:
    reason = None
    if state.tier is None:
        reason = "not found"
    elif not state.bound:
        reason = "unbound (or deprecated)"
    elif not state.profiled:
        reason = "never profiled"
    elif state.quality_score is None:
        reason = "its latest profile has no score"
    period = periods.get(state.tier) if state.tier else None
    stale = bool(
        state.profiled_at is not None
        and period is not None
        and now - state.profiled_at > STALE_AFTER_PERIODS * period
    )
    effective = None
    if reason is None and state.quality_score is not None:
        effective = state.quality_score * (STALE_FACTOR if stale else 1.0)
    return InputTrust(
        key=state.key,
        tier=state.tier,
        quality_score=state.quality_score,
        profiled_at=state.profiled_at,
        stale=stale,
        effective_score=effective,
        unscored_reason=reason,
    )


# -- impact hysteresis -----------------------------------------------------------------------


@dataclass(frozen=True)
class TrustState:
    """A row of `mdm_kpi_trust`: the last trust computed and the hysteresis' position."""

    tenant_id: uuid.UUID
    canonical_key: str
    trust_score: float | None
    weakest_input: str | None
    inputs: list[dict[str, Any]]
    computed_at: dt.datetime
    impacted: bool = False
    below_streak: int = 0


def assess_trust(
    tenant_id: uuid.UUID,
    trust: KpiTrust,
    previous: TrustState | None,
    thresholds: QualityThresholds,
    policy: IncidentPolicy,
) -> tuple[TrustState, NewEvent | None]:
    """The new state of a KPI after a trust computation, and the event of a transition.

    Not impacted: `open_after` computations in a row below the tier minimum make it impacted
    (`kpi.quality.impacted`). Impacted: a trust of at least the minimum plus the margin
    recovers it (`kpi.quality.recovered`). An unscored computation moves nothing; a tier
    without a minimum (tier3) is never impacted."""
    minimum = thresholds.minimum(trust.tier)
    impacted = previous.impacted if previous else False
    streak = previous.below_streak if previous else 0
    event_type = None
    score = trust.trust_score
    if minimum is not None and score is not None:
        if not impacted:
            streak = streak + 1 if score < minimum else 0
            if streak >= policy.open_after:
                impacted, event_type = True, EventType.KPI_QUALITY_IMPACTED
        elif score >= minimum + policy.recovery_margin:
            impacted, streak, event_type = False, 0, EventType.KPI_QUALITY_RECOVERED
    state = TrustState(
        tenant_id=tenant_id,
        canonical_key=trust.canonical_key,
        trust_score=score,
        weakest_input=trust.weakest_input,
        inputs=[i.as_dict() for i in trust.inputs],
        computed_at=trust.computed_at,
        impacted=impacted,
        below_streak=streak,
    )
    if event_type is None:
        return state, None
    payload = EVENT_SCHEMAS[event_type](
        canonical_key=trust.canonical_key,
        trust_score=score,
        weakest_input=trust.weakest_input,
        threshold=minimum,
    )
    event = NewEvent(
        type=event_type,
        tenant_id=tenant_id,
        entity_type=EntityType.KPI,
        entity_key=trust.canonical_key,
        correlation_id=uuid.uuid4(),
        actor=SYSTEM_ACTOR,
        occurred_at=trust.computed_at,
        payload=validate_event(event_type, payload),
    )
    return state, event


def input_changes(
    previous: Sequence[str] | None, current: Sequence[str]
) -> tuple[list[str], list[str]]:
    """(added, removed) inputs of a KPI; every input is added when it is new."""
    before, after = set(previous or ()), set(current)
    return sorted(after - before), sorted(before - after)
