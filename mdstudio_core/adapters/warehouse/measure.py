"""Measuring a table: the compiled statements run in one read-only transaction under the
timeout, and their rows read back as metrics."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mdstudio_core.adapters.warehouse.columns import ORDERABLE, _reflect, _unique_by_constraint
from mdstudio_core.adapters.warehouse.compiler import (
    ProfileStatements,
    _Spec,
    build_profile_statements,
    render_evidence,
)
from mdstudio_core.adapters.warehouse.engines import (
    DialectHooks,
    TimeBudget,
    connect_to_source,
    failures_named,
    first_line,
    hooks_for,
    read_only_snapshot,
)
from mdstudio_core.adapters.warehouse.errors import (
    InvalidPattern,
    ProfileError,
)
from mdstudio_core.domain.model import ColumnRule
from mdstudio_core.domain.patterns import PatternError, check_pattern
from mdstudio_core.domain.quality import Sample


@dataclass(frozen=True)
class ColumnMetrics:
    """The raw counts of one (column, rule set) pair, as the warehouse computed them."""

    name: str
    data_type: str
    n: int
    non_null: int
    distinct: int | None
    valid: int | None
    min: Any
    max: Any
    rules: list[str]
    rules_not_applied: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TableMetrics:
    """One measurement of one table: metrics per requested column rule, in request order.
    ``sql`` holds the statements with named placeholders; ``sql_params`` their values, by
    statement (``row pass``, ``distinct pass``) and placeholder name."""

    row_count: int
    columns: list[ColumnMetrics]
    sql: str
    sql_params: dict[str, dict[str, Any]]
    sample: Sample | None
    duration_ms: int
    profiled_at: dt.datetime
    rows_read: int | None = None


def column_metrics(
    spec: _Spec,
    row_count: int,
    non_null: int,
    distinct: int | None,
    valid: int | None,
    low: Any,
    high: Any,
) -> ColumnMetrics:
    """A spec's measured counts, with the notes on what could not be measured or applied."""
    notes = [f"validity rule not applied: {p}" for p in spec.problems] + spec.notes
    if spec.kind not in ORDERABLE:
        notes.append(f"min/max not measured: {spec.type_name} has no order")
    return ColumnMetrics(
        name=spec.rule.name,
        data_type=spec.type_name,
        n=row_count,
        non_null=non_null,
        distinct=distinct,
        valid=valid,
        min=low,
        max=high,
        rules=spec.applied,
        rules_not_applied=[p.split(":", 1)[0] for p in spec.problems],
        notes=notes,
    )


def _check_rule_pattern(
    connection: Connection, hooks: DialectHooks, column: str, pattern: str
) -> None:
    """A pattern outside the accepted language (one stored before it was narrowed) or one the
    warehouse rejects fails the profile, naming its column."""
    try:
        check_pattern(pattern)
        if hooks.check_pattern is not None:
            hooks.check_pattern(connection, pattern)
    except PatternError as exc:
        raise InvalidPattern(f"column {column}: pattern {pattern!r} is refused: {exc}") from exc
    except InvalidPattern as exc:
        raise InvalidPattern(f"column {column}: {exc}") from exc


def _evidence(
    statements: ProfileStatements, engine: Engine
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The passes under ``-- row pass`` / ``-- distinct pass`` headings (see `render_evidence`)."""
    passes = {"row pass": statements.row_pass, "distinct pass": statements.distinct_pass}
    return render_evidence(
        ((name, statement) for name, statement in passes.items() if statement is not None), engine
    )


def measure_table(
    engine: Engine,
    table: str,
    rules: Sequence[ColumnRule],
    *,
    schema: str | None = None,
    source: str = "warehouse",
    timeout_s: float | None = 600.0,
    sample_percent: float | None = None,
) -> TableMetrics:
    """Measure ``rules`` (bound columns, possibly the same column twice with different rules)
    on one table in one statement, inside one read-only transaction, under the timeout.

    Raises a `ProfileError` subclass for anything that prevents a complete, correct measurement.
    """
    hooks = hooks_for(engine.dialect.name)
    started = time.perf_counter()
    profiled_at = dt.datetime.now(dt.UTC)
    connection = read_only_snapshot(connect_to_source(engine, source))
    try:
        with connection, connection.begin():
            reflected = _reflect(connection, schema, table, source)
            for rule in rules:
                if rule.pattern is not None:
                    _check_rule_pattern(connection, hooks, rule.name, rule.pattern)
            high = hooks.high_cardinality(connection, reflected)
            unique = _unique_by_constraint(connection, reflected)
            seed = random.randrange(1, 2**31 - 1)
            statements = build_profile_statements(
                reflected,
                rules,
                engine.dialect.name,
                sample_percent=sample_percent,
                sample_seed=seed,
                high_cardinality=high,
                unique_by_constraint=unique,
            )
            sql, sql_params = _evidence(statements, engine)
            if statements.unique_by_constraint:
                sql += (
                    "\n-- distinct = non-null (single-column primary key or unique constraint): "
                    + ", ".join(statements.unique_by_constraint)
                )
            # The timeout bounds the whole profile: the distinct pass gets what the row pass left.
            budget = TimeBudget(timeout_s)
            advice = "; no partial profile was kept (raise the tier's timeout or enable sampling)"
            with failures_named(f"the profile of {table}", timeout_s, advice):
                with hooks.limits(connection, budget.left()):
                    totals = connection.execute(statements.row_pass).mappings().one()
                branches: dict[int, Any] = {}
                if statements.distinct_pass is not None:
                    with hooks.limits(connection, budget.left()):
                        branches = {
                            row["key"]: row
                            for row in connection.execute(statements.distinct_pass).mappings()
                        }
    except sa.exc.DBAPIError as exc:  # reflection and statistics, outside the two passes
        raise ProfileError(
            f"warehouse error while preparing the profile of {table}: {first_line(exc)}"
        ) from exc
    row_count = int(totals["n"])
    columns: list[ColumnMetrics] = []
    for spec in statements.specs:
        i = spec.index
        if i in statements.grouped:
            row = branches[i]
            non_null, distinct = int(row["nn"]), int(row["d"])
            valid = None if row["v"] is None else int(row["v"])
            low, high = row.get(f"min_{i}"), row.get(f"max_{i}")
        else:
            non_null = int(totals[f"nn_{i}"])
            distinct = (
                non_null
                if spec.column.name in statements.unique_by_constraint
                else int(branches[statements.sorted_columns[spec.column.name]]["d"])
            )
            valid = int(totals[f"v_{i}"]) if f"v_{i}" in totals else None
            low, high = totals.get(f"min_{i}"), totals.get(f"max_{i}")
        columns.append(column_metrics(spec, row_count, non_null, distinct, valid, low, high))
    sample = (
        Sample(
            method=f"TABLESAMPLE SYSTEM REPEATABLE ({seed})", percent=sample_percent, rows=row_count
        )
        if sample_percent is not None
        else None
    )
    # Each statement, and each branch of the distinct pass, reads every row.
    scans = 1 + len(statements.grouped) + len(statements.sorted_columns)
    return TableMetrics(
        row_count=row_count,
        columns=columns,
        sql=sql,
        sql_params=sql_params,
        sample=sample,
        duration_ms=int((time.perf_counter() - started) * 1000),
        profiled_at=profiled_at,
        rows_read=row_count * scans,
    )
