"""The profile SQL compiler: a table's bound columns and rules become the row pass and the
distinct pass, statements that measure everything inside the warehouse."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from mdstudio_core.adapters.warehouse.columns import (
    ENUM,
    ORDERABLE,
    TEXT,
    _find_column,
    _type_name,
    applicable_rules,
    column_kind,
)
from mdstudio_core.adapters.warehouse.engines import DialectHooks, hooks_for
from mdstudio_core.adapters.warehouse.errors import ColumnNotFound, ProfileError
from mdstudio_core.domain.incremental import Counts
from mdstudio_core.domain.model import ColumnRule


@dataclass(frozen=True)
class _Spec:
    index: int
    rule: ColumnRule
    column: sa.Column[Any]
    kind: str
    type_name: str
    applied: list[str]
    problems: list[str]
    bounds: dict[str, Any]  # the applied min/max as the column compares them
    notes: list[str]  # how a bound was converted to compare


def _rule_condition(
    spec: _Spec, value: ColumnElement[Any], hooks: DialectHooks
) -> ColumnElement[bool] | None:
    rule, conditions = spec.rule, []
    for name in spec.applied:
        if name == "pattern":
            assert rule.pattern is not None
            conditions.append(hooks.regex(value, rule.pattern))
        elif name == "allowed_values":
            allowed = list(rule.allowed_values or [])
            if spec.kind == ENUM:
                # A value outside the enum's labels can match nothing (and PostgreSQL would
                # reject it as enum input), so it is dropped here.
                labels = set(getattr(spec.column.type, "enums", None) or allowed)
                allowed = [v for v in allowed if v in labels]
            if allowed:
                values = [sa.literal(v, spec.column.type) for v in allowed]
                conditions.append(value.in_(values))
            else:
                conditions.append(sa.false())
        elif name == "min":
            conditions.append(value >= sa.literal(spec.bounds["min"], spec.column.type))
        elif name == "max":
            conditions.append(value <= sa.literal(spec.bounds["max"], spec.column.type))
    if not conditions:
        return None
    return sa.and_(*conditions)


def _comparable_bounds(
    rule: ColumnRule, applied: Sequence[str], column_type: sa.types.TypeEngine[Any]
) -> tuple[dict[str, Any], list[str]]:
    """The applied ``min``/``max`` as the column compares them, and notes on any conversion.

    A date-time column and a bound that disagree on having a time zone meet in UTC, explicitly,
    so that the comparison never depends on the warehouse session's time zone: a zoned bound on
    a column without zone (a PostgreSQL ``timestamp``, any SQLite date-time, stored as text) is
    compared as its UTC wall-clock time; a bound without zone (a date-time or a date, which
    means its midnight) on a zoned column (``timestamptz``) is read as UTC. Anything else is
    compared as given.
    """
    zoned_column = isinstance(column_type, sa.DateTime) and bool(column_type.timezone)
    bounds: dict[str, Any] = {}
    notes: list[str] = []
    for name in ("min", "max"):
        if name in applied:
            given = getattr(rule, name)
            bounds[name], why = _meet_in_utc(given, zoned_column)
            if why is not None:
                notes.append(
                    f"{name} {given.isoformat()} compared as {bounds[name].isoformat()} (UTC): "
                    f"{why}"
                )
    return bounds, notes


def _meet_in_utc(bound: Any, zoned_column: bool) -> tuple[Any, str | None]:
    """(the bound to compare, why it was converted or None); see `_comparable_bounds`."""
    zoned_bound = isinstance(bound, dt.datetime) and bound.tzinfo is not None
    if zoned_bound and not zoned_column:
        return bound.astimezone(dt.UTC).replace(tzinfo=None), "the column has no time zone"
    if zoned_column and not zoned_bound:
        if not isinstance(bound, dt.datetime):
            bound = dt.datetime.combine(bound, dt.time())
        return bound.replace(tzinfo=dt.UTC), "the bound has no time zone, the column has one"
    return bound, None


@dataclass(frozen=True)
class ProfileStatements:
    """The two statements that measure a table, run in one repeatable-read, read-only
    transaction (so both see the same rows).

    row_pass: ONE aggregate over the table: the row count and, for each column spec not
        measured by a grouped branch, the non-null count, the valid count (every applicable
        value rule, evaluated once per row) and min/max. Parallel-safe: PostgreSQL spreads the
        scan and the regexes over its workers.
    distinct_pass: one ``UNION ALL`` branch per column, run side by side under a Parallel
        Append on PostgreSQL:
        - *sorted* branch (high-cardinality columns, from planner statistics):
          ``COUNT(DISTINCT column)``, one sort; deduplicating first would save nothing.
        - *grouped* branch (all other columns): ``GROUP BY column`` (hash aggregate), then
          distinct, non-null, valid and min/max over the groups, weighted by group size, so
          the value rules (regexes above all) run once per distinct value instead of once
          per row, and the row pass does not touch the column at all.
        None when nothing needs it (every column unique by constraint).
    grouped: indexes of the specs measured entirely by the distinct pass.
    sorted_columns: columns with a ``COUNT(DISTINCT)`` branch, keyed by the index of the first
        spec on that column.
    unique_by_constraint: bound columns whose distinct count is their non-null count because a
        single-column primary key or unique constraint guarantees it.
    """

    row_pass: sa.Select[Any]
    distinct_pass: sa.Select[Any] | sa.CompoundSelect | None
    specs: list[_Spec]
    grouped: set[int] = field(default_factory=set)
    sorted_columns: dict[str, int] = field(default_factory=dict)
    unique_by_constraint: list[str] = field(default_factory=list)


def _ordered(spec: _Spec, value: ColumnElement[Any], hooks: DialectHooks) -> ColumnElement[Any]:
    return hooks.text_order(value) if spec.kind == TEXT else value


_ONE = sa.literal(1, sa.BigInteger())


def _unchanged(aggregate: Any) -> Any:
    return aggregate


def _column_aggregates(
    spec: _Spec,
    col: ColumnElement[Any],
    hooks: DialectHooks,
    suffix: str,
    *,
    min_max: bool = True,
    only: Callable[[Any], Any] = _unchanged,
) -> list[ColumnElement[Any]]:
    """What a full profile, an incremental pass and a backtest count of a rule set, written
    once so that they count alike: `nn_{suffix}` its non-null values, `v_{suffix}` the valid
    ones where a value rule applies and, with `min_max`, an orderable column's `min_{suffix}`
    and `max_{suffix}`. `only` narrows each aggregate (an incremental pass's part)."""
    items = [sa.cast(only(sa.func.count(col)), sa.BigInteger()).label(f"nn_{suffix}")]
    condition = _rule_condition(spec, col, hooks)
    if condition is not None:
        valid = only(sa.func.count(sa.case((condition, _ONE))))
        items.append(sa.cast(valid, sa.BigInteger()).label(f"v_{suffix}"))
    if min_max and spec.kind in ORDERABLE:
        ordered = _ordered(spec, col, hooks)
        items.append(sa.type_coerce(only(sa.func.min(ordered)), col.type).label(f"min_{suffix}"))
        items.append(sa.type_coerce(only(sa.func.max(ordered)), col.type).label(f"max_{suffix}"))
    return items


def _column_counts(row: Mapping[str, Any], suffix: str) -> Counts:
    """The values of `_column_aggregates` read back from a result row."""
    valid = row.get(f"v_{suffix}")
    return Counts(
        non_null=int(row[f"nn_{suffix}"]),
        valid=None if valid is None else int(valid),
        min=row.get(f"min_{suffix}"),
        max=row.get(f"max_{suffix}"),
    )


def _row_pass(
    source: sa.FromClause, specs: Sequence[_Spec], hooks: DialectHooks, grouped: set[int]
) -> sa.Select[Any]:
    items: list[ColumnElement[Any]] = [sa.cast(sa.func.count(), sa.BigInteger()).label("n")]
    for spec in specs:
        if spec.index not in grouped:
            col = source.c[spec.column.name]
            items += _column_aggregates(spec, col, hooks, str(spec.index))
    return sa.select(*items).select_from(source)


def _slots(
    specs: Sequence[_Spec], grouped: set[int], own: int | None, low: Any = None, high: Any = None
) -> list[ColumnElement[Any]]:
    """min/max columns of every grouped orderable spec: the branch's own values, typed NULLs
    elsewhere, so that every UNION ALL branch has the same row type."""
    slots: list[ColumnElement[Any]] = []
    for other in specs:
        if other.index not in grouped or other.kind not in ORDERABLE:
            continue
        j, type_ = other.index, other.column.type
        if other.index == own:
            slots += [
                sa.type_coerce(low, type_).label(f"min_{j}"),
                sa.type_coerce(high, type_).label(f"max_{j}"),
            ]
        else:
            slots += [
                sa.cast(sa.null(), type_).label(f"min_{j}"),
                sa.cast(sa.null(), type_).label(f"max_{j}"),
            ]
    return slots


def _grouped_branch(
    spec: _Spec,
    source: sa.FromClause,
    specs: Sequence[_Spec],
    grouped: set[int],
    hooks: DialectHooks,
) -> sa.Select[Any]:
    col = source.c[spec.column.name]
    value = _ordered(spec, col, hooks)
    groups = (
        sa.select(value.label("v"), sa.func.count().label("k"))
        .select_from(source)
        .where(col.is_not(None))
        .group_by(value)
        .subquery(f"g{spec.index}")
    )
    condition = _rule_condition(spec, groups.c.v, hooks)
    valid: ColumnElement[Any] = (
        sa.func.coalesce(sa.func.sum(sa.case((condition, groups.c.k))), 0)
        if condition is not None
        else sa.null()
    )
    low = high = None
    if spec.kind in ORDERABLE:
        low, high = sa.func.min(groups.c.v), sa.func.max(groups.c.v)
    return sa.select(
        sa.literal(spec.index, sa.Integer()).label("key"),
        sa.cast(sa.func.count(), sa.BigInteger()).label("d"),
        sa.cast(sa.func.coalesce(sa.func.sum(groups.c.k), 0), sa.BigInteger()).label("nn"),
        sa.cast(valid, sa.BigInteger()).label("v"),
        *_slots(specs, grouped, spec.index, low, high),
    ).select_from(groups)


def _sorted_branch(
    spec: _Spec,
    source: sa.FromClause,
    specs: Sequence[_Spec],
    grouped: set[int],
    hooks: DialectHooks,
) -> sa.Select[Any]:
    value = _ordered(spec, source.c[spec.column.name], hooks)
    return sa.select(
        sa.literal(spec.index, sa.Integer()).label("key"),
        sa.cast(sa.func.count(sa.distinct(value)), sa.BigInteger()).label("d"),
        sa.cast(sa.null(), sa.BigInteger()).label("nn"),
        sa.cast(sa.null(), sa.BigInteger()).label("v"),
        *_slots(specs, grouped, None),
    ).select_from(source)


def build_specs(table: sa.Table, rules: Sequence[ColumnRule]) -> list[_Spec]:
    """One spec per rule: its column (`ColumnNotFound` naming the missing ones), kind, and
    the rules that apply to its type."""
    specs: list[_Spec] = []
    missing: list[str] = []
    for index, rule in enumerate(rules):
        column = _find_column(table, rule.name)
        if column is None:
            missing.append(rule.name)
            continue
        kind = column_kind(column.type)
        type_name = _type_name(column.type)
        applied, problems = applicable_rules(rule, kind, type_name)
        if problems:  # validity is not scored at all; do not spend warehouse time on it
            applied = []
        bounds, notes = _comparable_bounds(rule, applied, column.type)
        specs.append(_Spec(index, rule, column, kind, type_name, applied, problems, bounds, notes))
    if missing:
        where = f"{table.schema}.{table.name}" if table.schema else table.name
        available = ", ".join(sorted(c.name for c in table.c))
        raise ColumnNotFound(
            f"column {', '.join(missing)} not found in table {where} (columns: {available})"
        )
    return specs


def build_profile_statements(
    table: sa.Table,
    rules: Sequence[ColumnRule],
    dialect_name: str,
    *,
    sample_percent: float | None = None,
    sample_seed: int = 0,
    high_cardinality: set[str] | frozenset[str] = frozenset(),
    unique_by_constraint: set[str] | frozenset[str] = frozenset(),
) -> ProfileStatements:
    """Build the statements that measure ``rules`` on ``table`` (reflected). Exposed for the
    benchmark and for tests that inspect the SQL. Columns in ``high_cardinality`` get the sorted
    shape; columns in ``unique_by_constraint`` get no distinct branch at all."""
    hooks = hooks_for(dialect_name)
    specs = build_specs(table, rules)
    source: sa.FromClause = table
    if sample_percent is not None:
        if hooks.sample is None:
            raise ProfileError(f"sampling is not supported on {dialect_name}; profile in full")
        if not 0 < sample_percent <= 100:
            raise ProfileError(f"sample percent must be in (0, 100], got {sample_percent}")
        source = hooks.sample(table, sample_percent, sample_seed)
    unique = {s.column.name for s in specs} & set(unique_by_constraint)
    grouped = {
        s.index
        for s in specs
        if s.column.name not in high_cardinality and s.column.name not in unique
    }
    sorted_columns: dict[str, int] = {}
    for spec in specs:
        if spec.index not in grouped and spec.column.name not in unique:
            sorted_columns.setdefault(spec.column.name, spec.index)
    branches = [
        _grouped_branch(spec, source, specs, grouped, hooks)
        if spec.index in grouped
        else _sorted_branch(spec, source, specs, grouped, hooks)
        for spec in specs
        if spec.index in grouped or sorted_columns.get(spec.column.name) == spec.index
    ]
    distinct_pass: sa.Select[Any] | sa.CompoundSelect | None = (
        None if not branches else branches[0] if len(branches) == 1 else sa.union_all(*branches)
    )
    return ProfileStatements(
        row_pass=_row_pass(source, specs, hooks, grouped),
        distinct_pass=distinct_pass,
        specs=specs,
        grouped=grouped,
        sorted_columns=sorted_columns,
        unique_by_constraint=sorted(unique),
    )


def render_sql(
    statement: sa.sql.ClauseElement, engine_or_dialect: Engine | Any
) -> tuple[str, dict[str, Any]]:
    """The statement as the warehouse ran it, with named placeholders (``:param_1``; the driver
    itself gets its own style, ``?`` or ``%(param_1)s``), and the values by placeholder name.
    Recorded in the profile as evidence, never executed from this text. The values stay out of
    the text: they are the steward's (up to 1000 allowed values, any characters), and apart
    they are data, never SQL or Markdown to whoever reads the statement."""
    dialect = getattr(engine_or_dialect, "dialect", engine_or_dialect)
    compiled = statement.compile(dialect=type(dialect)(paramstyle="named"))
    return str(compiled), dict(compiled.params)


def render_evidence(
    statements: Iterable[tuple[str, sa.sql.ClauseElement]], engine: Engine
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The named statements a profile ran, as its evidence: their texts under ``-- name``
    headings, and their values by statement and placeholder name (see `render_sql`)."""
    texts: list[str] = []
    params: dict[str, dict[str, Any]] = {}
    for name, statement in statements:
        text, params[name] = render_sql(statement, engine)
        texts.append(f"-- {name}\n{text};")
    return "\n".join(texts), params
