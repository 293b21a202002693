"""A request's changes, field by field: what a reviewer reads before deciding.

The live entity (None when the request creates it) against the proposed state: each governed
field added, removed or changed; a binding's columns matched by name and their rules diffed one
by one, so a changed bound on one column reads as that, not as "binding changed".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mdstudio_core.domain.model import BOOKKEEPING_FIELDS


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True)
class DiffRow:
    """One changed field: its path (`binding.columns[amount].min`), the change, both values."""

    field: str
    change: Change
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class EntityDiff:
    """The changed fields in the proposal's order, and the names of those left as they are."""

    rows: list[DiffRow]
    unchanged: list[str]


def diff_entity(live: Mapping[str, Any] | None, proposed: Mapping[str, Any]) -> EntityDiff:
    """The proposal against the live state (bookkeeping fields such as version aside); a new
    entity (`live` None) shows every field as added."""
    old = {k: v for k, v in (live or {}).items() if k not in BOOKKEEPING_FIELDS}
    new = {k: v for k, v in proposed.items() if k not in BOOKKEEPING_FIELDS}
    rows: list[DiffRow] = []
    unchanged: list[str] = []
    for name in [*new, *(k for k in old if k not in new)]:
        if name == "binding":
            found = list(_binding_rows(old.get(name), new.get(name)))
        else:
            found = list(_value_rows(name, old.get(name), new.get(name)))
        rows.extend(found)
        if not found and (name in old or name in new):
            unchanged.append(name)
    return EntityDiff(rows, unchanged)


def _value_rows(name: str, old: Any, new: Any) -> Iterator[DiffRow]:
    if old == new:
        return
    if old is None:
        yield DiffRow(name, Change.ADDED, new=new)
    elif new is None:
        yield DiffRow(name, Change.REMOVED, old=old)
    else:
        yield DiffRow(name, Change.CHANGED, old, new)


def _binding_rows(old: Any, new: Any) -> Iterator[DiffRow]:
    """Where the binding reads (source, schema, table), then its columns by name, then each
    kept column's rules."""
    old, new = old or {}, new or {}
    for part in ("source", "schema", "table"):
        yield from _value_rows(f"binding.{part}", old.get(part), new.get(part))
    old_columns = {c["name"]: c for c in old.get("columns") or ()}
    new_columns = {c["name"]: c for c in new.get("columns") or ()}
    for name in [*new_columns, *(n for n in old_columns if n not in new_columns)]:
        path = f"binding.columns[{name}]"
        before, after = old_columns.get(name), new_columns.get(name)
        if before is None:
            yield DiffRow(path, Change.ADDED, new=_rules(after))
        elif after is None:
            yield DiffRow(path, Change.REMOVED, old=_rules(before))
        else:
            for rule in [*after, *(r for r in before if r not in after)]:
                if rule != "name":
                    yield from _value_rows(f"{path}.{rule}", before.get(rule), after.get(rule))


def _rules(column: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (column or {}).items() if k != "name"}
