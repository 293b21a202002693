"""What a command prints: records and tables for people, or the same data as JSON with
`--json`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click
import orjson


def wants_json() -> bool:
    return bool(click.get_current_context().find_root().meta.get("mdstudio.json"))


def jsonable(data: Any) -> Any:
    """Records (dataclasses, enums, UUIDs, datetimes) as plain JSON values."""
    return orjson.loads(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))


def emit(data: Any, human: Callable[[], None]) -> None:
    if wants_json():
        options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
        click.echo(orjson.dumps(data, option=options).decode())
    else:
        human()


def print_record(record: dict[str, Any], fields: Iterable[str] | None = None) -> None:
    keys = list(fields or record)
    width = max(len(key) for key in keys) + 2
    for key in keys:
        value = record.get(key)
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str)
        click.echo(f"{key + ':':<{width}}{'' if value is None else value}".rstrip())


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)
    ]
    for line in [[column.upper() for column in columns], *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
