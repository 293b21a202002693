"""What a pass works with: the table as reflected for it, the runner that runs its statements
under the timeout and keeps them as evidence, and what it returns."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from mdstudio_core.adapters.warehouse import (
    DialectHooks,
    TableMetrics,
    build_specs,
    column_kind,
    incremental_column,
)
from mdstudio_core.adapters.warehouse.columns import _reflect, _type_name, _unique_by_constraint
from mdstudio_core.adapters.warehouse.compiler import _Spec, render_evidence
from mdstudio_core.adapters.warehouse.engines import TimeBudget
from mdstudio_core.adapters.warehouse.measure import _check_rule_pattern
from mdstudio_core.domain.incremental import Counts, DayCounts, DaysRead, Mode, TableState, iso
from mdstudio_core.domain.model import ColumnRule, Incremental


def signature(rule: ColumnRule) -> str:
    """A rule set's identity in the state: its JSON (a column bound twice with different
    rules is measured, and kept, once per rule set)."""
    return rule.model_dump_json()


@dataclass(frozen=True)
class Increment:
    """One pass: the table's metrics (what a full profile would measure), how they were
    obtained, the state to keep and the days it covered."""

    metrics: TableMetrics
    mode: Mode
    full_reason: str | None
    watermark_before: Any
    watermark_after: Any
    rows_read: int
    probes: dict[str, str]
    state: TableState
    days: list[DayCounts]
    days_read: DaysRead
    # The statements as run, by name (for `bench/incremental.py` to EXPLAIN them).
    statements: list[tuple[str, sa.Executable]] = field(default_factory=list)

    @property
    def window(self) -> tuple[str | None, str | None]:
        return iso(self.watermark_before), iso(self.watermark_after)


@dataclass
class _Group:
    """One (part, day) group of the row pass."""

    rows: int = 0
    inc_min: Any = None
    inc_max: Any = None
    checksum: tuple[int, ...] | None = None
    counts: dict[int, Counts] = field(default_factory=dict)


class _Runner:
    """Runs the pass's statements under the timeout, keeping each as evidence."""

    def __init__(self, connection: Connection, hooks: DialectHooks, timeout_s: float | None):
        self.connection = connection
        self.hooks = hooks
        self.budget = TimeBudget(timeout_s)
        self.statements: list[tuple[str, sa.Executable]] = []
        # What the statements read, counted by construction: whole-table scans, reads of the
        # incremental range, and rows found through an index.
        self.scans = 0
        self.ranges = 0
        self.found = 0

    def rows_read(self, row_count: int, range_rows: int) -> int:
        return self.scans * row_count + self.ranges * range_rows + self.found

    def rows(
        self,
        name: str,
        statement: sa.Executable,
        reads: str | None,
        planner: Mapping[str, str] | None = None,
    ) -> list[RowMapping]:
        """Run `statement`; `reads`: `scan` (the whole table), `range` (the incremental range)
        or None (an index alone answers it). `planner`: PostgreSQL settings for this statement
        alone."""
        self.statements.append((name, statement))
        self.scans += reads == "scan"
        self.ranges += reads == "range"
        planner = planner if self.connection.dialect.name == "postgresql" else None
        with self.hooks.limits(self.connection, self.budget.left()):
            previous = {name: self._set(name, value) for name, value in (planner or {}).items()}
            found = list(self.connection.execute(statement).mappings())
            for setting, value in previous.items():
                self._set(setting, value)
            return found

    def _set(self, setting: str, value: str) -> str:
        """Set a planner setting for the rest of the transaction; returns the one it had."""
        before = self.connection.execute(sa.select(sa.func.current_setting(setting))).scalar_one()
        self.connection.execute(sa.select(sa.func.set_config(setting, value, True)))
        return str(before)

    def evidence(self, engine: Engine) -> tuple[str, dict[str, dict[str, Any]]]:
        return render_evidence(self.statements, engine)


@dataclass(frozen=True)
class _Table:
    """The reflected table and what the pass needs to know of it."""

    table: sa.Table
    inc: sa.Column[Any]
    inc_kind: str
    specs: list[_Spec]
    unique_constraint: frozenset[str]
    indexed: frozenset[str]
    types: dict[str, str]
    decode: Callable[[Any], Any]

    def scored_unique(self) -> dict[str, _Spec]:
        """Columns whose distinct count is needed and not given by a constraint, by name (the
        first spec on each)."""
        out: dict[str, _Spec] = {}
        for spec in self.specs:
            name = spec.column.name
            if spec.rule.unique and name not in self.unique_constraint:
                out.setdefault(name, spec)
        return out


def _leading_index_columns(connection: Connection, table: sa.Table) -> frozenset[str]:
    """Columns that lead an index (or a primary key): an equality or range on one of them is
    answered without reading the table."""
    inspector = sa.inspect(connection)
    out: set[str] = set()
    try:
        primary = inspector.get_pk_constraint(table.name, schema=table.schema)
        indexes = inspector.get_indexes(table.name, schema=table.schema)
        uniques = inspector.get_unique_constraints(table.name, schema=table.schema)
    except NotImplementedError:
        return frozenset()
    for columns in [primary.get("constrained_columns") or []]:
        if columns:
            out.add(columns[0])
    for index in indexes:
        names = index.get("column_names") or []
        using = (index.get("dialect_options") or {}).get("postgresql_using", "btree")
        if names and names[0] is not None and using in ("btree", "hash"):
            out.add(names[0])
    for unique in uniques:
        names = unique.get("column_names") or []
        if names:
            out.add(names[0])
    return frozenset(out)


def _prepare(
    connection: Connection,
    hooks: DialectHooks,
    schema: str | None,
    table: str,
    source: str,
    rules: Sequence[ColumnRule],
    incremental: Incremental,
) -> _Table:
    reflected = _reflect(connection, schema, table, source)
    inc = incremental_column(reflected, incremental)
    for rule in rules:
        if rule.pattern is not None:
            _check_rule_pattern(connection, hooks, rule.name, rule.pattern)
    specs = build_specs(reflected, rules)
    types = {c.name: _type_name(c.type) for c in [inc, *(s.column for s in specs)]}
    processor = (
        inc.type.dialect_impl(connection.dialect).result_processor(connection.dialect, None)
        if connection.dialect.name == "sqlite"
        else None
    )
    return _Table(
        table=reflected,
        inc=inc,
        inc_kind=column_kind(inc.type),
        specs=specs,
        unique_constraint=frozenset(_unique_by_constraint(connection, reflected)),
        indexed=_leading_index_columns(connection, reflected),
        types=types,
        decode=processor or (lambda value: value),
    )
