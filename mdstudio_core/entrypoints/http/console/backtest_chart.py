"""A backtest as the console's request page shows it: a small chart of the days (the score
under the live and under the proposed rules, the tier's minimum as a line) and the counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mdstudio_core.config import Settings
from mdstudio_core.domain.backtest import Backtest
from mdstudio_core.service_layer import backtest as backtests
from mdstudio_core.service_layer import profiling

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 220, 44, 16, 16, 36


@dataclass(frozen=True)
class BacktestChart:
    """SVG coordinates: one x per day (oldest on the left), 0-100 on the y axis. A day a side
    could not score leaves a gap in that side's points."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    live: list[tuple[float, float]]
    proposed: list[tuple[float, float]]
    minimum_y: float | None
    gridlines: list[tuple[float, int]]
    first_day: str
    last_day: str

    @staticmethod
    def polyline(points: Sequence[tuple[float, float]]) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


@dataclass(frozen=True)
class Shown:
    """One field's backtest on the page (`item`: its number in a change set)."""

    item: int | None
    entity_key: str
    backtest: Backtest
    chart: BacktestChart | None


def chart(backtest: Backtest) -> BacktestChart | None:
    """The chart of a backtest's days; None when it has none."""
    if not backtest.days:
        return None
    span_x, span_y = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = len(backtest.days)

    def x_of(index: int) -> float:
        return LEFT + (index * span_x / (count - 1) if count > 1 else span_x / 2)

    def y_of(score: float) -> float:
        return TOP + span_y * (1 - score / 100)

    def points(side: str) -> list[tuple[float, float]]:
        return [
            (x_of(i), y_of(score))
            for i, day in enumerate(backtest.days)
            if (score := day.score(side)) is not None
        ]

    return BacktestChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
        bottom=HEIGHT - BOTTOM,
        live=points("live"),
        proposed=points("proposed"),
        minimum_y=None if backtest.minimum is None else y_of(backtest.minimum),
        gridlines=[(y_of(v), v) for v in (0, 25, 50, 75, 100)],
        first_day=backtest.days[0].day.isoformat(),
        last_day=backtest.days[-1].day.isoformat(),
    )


def shown(
    settings: Settings,
    plans: Sequence[backtests.BacktestPlan],
    engine_for: profiling.EngineFor,
) -> list[Shown]:
    """Run each planned backtest against the warehouse and chart it."""
    out = []
    for plan in plans:
        found = backtests.run_backtest(settings, plan, engine_for)
        out.append(Shown(plan.item, plan.canonical_key, found, chart(found)))
    return out
