"""A backtest as `mdstudio profiles preview --approval ID --backtest` prints it: the days,
then what the tier's gate and the incident rule would have made of them under each set of
rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

DAY_COLUMNS = ("day", "live_score", "proposed_score")


def lines(backtest: dict[str, Any]) -> list[str]:
    """The backtest (its JSON) as text lines."""
    out = [f"backtest needs {backtest['needs']}"] if backtest["needs"] else []
    cells = [
        [str(day[column]) if day[column] is not None else "-" for column in DAY_COLUMNS]
        for day in backtest["days"]
    ]
    widths = [
        max([len(column), *(len(row[i]) for row in cells)]) for i, column in enumerate(DAY_COLUMNS)
    ]
    for row in [[column.upper() for column in DAY_COLUMNS], *cells]:
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if not cells:
        out.append("(no day with rows in the window)")
    minimum = backtest["minimum"]
    line = f"the {backtest['tier']} minimum {minimum:g}" if minimum is not None else "no minimum"
    failing, opened = backtest["failing_days"], backtest["incidents"]
    settings = backtest["incident_settings"]
    out.append(f"failing days ({line}): live {failing['live']}, proposed {failing['proposed']}")
    out.append(
        f"incidents opened (open after {settings['open_after']}, recovery margin "
        f"{settings['recovery_margin']:g}): live {opened['live']}, proposed {opened['proposed']}"
    )
    return out


def echo(evidence: dict[str, Any], print_profile: Callable[[dict[str, Any]], None]) -> None:
    """A request's preview (`print_profile`) and its backtest, or a change set's backtests
    item by item."""
    if "items" in evidence:
        for item in evidence["items"]:
            click.echo(f"item {item['item']}: {item['entity_key']}")
            for line in lines(item["backtest"]):
                click.echo(line)
            click.echo("")
        return
    print_profile(evidence)
    click.echo("")
    for line in lines(evidence["backtest"]):
        click.echo(line)
