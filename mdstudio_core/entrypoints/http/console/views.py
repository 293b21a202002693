"""What the pages show, computed from the services' answers: nothing here touches the store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.change_sets import ChangeSet
from mdstudio_core.domain.deadlines import ApprovalDeadlines
from mdstudio_core.domain.diff import EntityDiff, diff_entity
from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.model import ApprovalStatus, EntityType, LiveEntity
from mdstudio_core.domain.quality import StoredProfile

E = TypeVar("E", bound=StrEnum)


def choice(params: dict[str, str], name: str, enum: type[E]) -> E | None:
    """An optional filter of the query string; an unknown value is invalid input naming it."""
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        return enum(raw)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidInput(f"must be one of {allowed}", field=name) from None


def offset_of(params: dict[str, str]) -> int:
    raw = params.get("offset") or "0"
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidInput("must be a non-negative whole number", field="offset")
    return int(raw)


PAGE_SIZES = (100, 500, 1000)


def per_page_of(params: dict[str, str]) -> int:
    """Rows per inbox page: 100 unless 500 or 1000 is asked for."""
    raw = params.get("per_page") or str(PAGE_SIZES[0])
    if not raw.isdigit() or int(raw) not in PAGE_SIZES:
        raise InvalidInput(f"must be one of {', '.join(map(str, PAGE_SIZES))}", field="per_page")
    return int(raw)


@dataclass(frozen=True)
class RequestView:
    """A request as its page shows it: the diff against the live entity, and whether the
    entity moved on since the request was made."""

    approval: Approval
    live: LiveEntity | None
    diff: EntityDiff
    stale: bool
    has_binding: bool
    impact: list[dict[str, Any]]  # the KPIs depending on the field, with their trust

    @classmethod
    def of(
        cls, approval: Approval, live: LiveEntity | None, impact: list[dict[str, Any]]
    ) -> RequestView:
        live_version = live.version if live else None
        return cls(
            approval=approval,
            live=live,
            impact=impact,
            diff=diff_entity(live.as_dict() if live else None, approval.payload),
            stale=approval.status is ApprovalStatus.PENDING
            and live_version != approval.base_version,
            has_binding=approval.entity_type is EntityType.GLOBAL_METADATA
            and bool(approval.payload.get("binding")),
        )

    @property
    def pending(self) -> bool:
        return self.approval.status is ApprovalStatus.PENDING


# A change set's page shows the first items' changes open; the others are collapsed.
OPEN_ITEMS = 50


@dataclass(frozen=True)
class ItemView:
    """One item of a change set: its number, its request, its changes (against the state it
    was submitted against) and whether its entity moved on since."""

    number: int
    item: Approval
    diff: EntityDiff
    stale: bool

    @property
    def open(self) -> bool:
        return self.number <= OPEN_ITEMS


@dataclass(frozen=True)
class ChangeSetView:
    """A change set as its page shows it: the set's request, each item with its diff, and the
    combined impact (every KPI any item endangers)."""

    approval: Approval
    items: list[ItemView]
    impact: list[dict[str, Any]]

    @classmethod
    def of(
        cls,
        change_set: ChangeSet,
        live: Mapping[tuple[EntityType, str], LiveEntity],
        impact: list[dict[str, Any]],
    ) -> ChangeSetView:
        stale = set(change_set.stale_items(live)) if change_set.pending else set()
        return cls(
            approval=change_set.approval,
            impact=impact,
            items=[
                ItemView(
                    number, item, diff_entity(item.current_state, item.payload), number in stale
                )
                for number, item in enumerate(change_set.items, 1)
            ],
        )

    @property
    def stale(self) -> bool:
        return any(item.stale for item in self.items)

    @property
    def pending(self) -> bool:
        return self.approval.status is ApprovalStatus.PENDING

    @property
    def collapsed(self) -> int:
        return max(len(self.items) - OPEN_ITEMS, 0)


def inbox_row(
    summary: Mapping[str, Any],
    deadlines: ApprovalDeadlines,
    now: dt.datetime,
    items: Mapping[Any, int],
    endorsements: Mapping[Any, Sequence[Any]],
) -> dict[str, Any]:
    """An inbox row: the listing's fields, its deadline and whether it passed, a change set's
    item count, and who endorsed it so far."""
    return {
        **summary,
        "deadline": deadlines.deadline(summary["tier"], summary["requested_at"]),
        "overdue": summary["status"] == ApprovalStatus.PENDING.value
        and deadlines.overdue(summary["tier"], summary["requested_at"], now),
        "items": items.get(summary["id"]),
        "endorsed_by": [e.user for e in endorsements.get(summary["id"], ())],
    }


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    score: float
    label: str


@dataclass(frozen=True)
class ScoreChart:
    """The quality score over time as SVG coordinates (0-100 on the y axis, one point per
    profile, oldest on the left)."""

    width: int
    height: int
    left: int
    top: int
    bottom: int
    right: int
    points: list[ChartPoint]
    gridlines: list[tuple[float, int]]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def latest(self) -> ChartPoint:
        return self.points[-1]


def score_chart(profiles: Sequence[StoredProfile]) -> ScoreChart | None:
    """The chart of a profile history given newest first; None when nothing was scored."""
    scored = [p for p in reversed(profiles) if p.quality_score is not None]
    if not scored:
        return None
    width, height, left, right, top, bottom = 640, 220, 44, 16, 16, 36
    span_x, span_y = width - left - right, height - top - bottom

    def y_of(score: float) -> float:
        return top + span_y * (1 - score / 100)

    step = span_x / (len(scored) - 1) if len(scored) > 1 else 0.0
    points = [
        ChartPoint(
            x=left + (i * step if len(scored) > 1 else span_x / 2),
            y=y_of(float(p.quality_score or 0)),
            score=float(p.quality_score or 0),
            label=p.created_at.strftime("%Y-%m-%d %H:%M"),
        )
        for i, p in enumerate(scored)
    ]
    return ScoreChart(
        width=width,
        height=height,
        left=left,
        top=top,
        bottom=height - bottom,
        right=width - right,
        points=points,
        gridlines=[(y_of(v), v) for v in (0, 25, 50, 75, 100)],
    )


def column_rows(profile: StoredProfile | None) -> list[dict[str, Any]]:
    """The latest profile's per-column measures."""
    return list(profile.columns or []) if profile else []
