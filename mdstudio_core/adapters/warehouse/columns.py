"""The bound table as the warehouse describes it: its reflected columns, their kinds, and which
rules apply to a column of each kind."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from mdstudio_core.adapters.warehouse.errors import InvalidIncremental, TableNotFound
from mdstudio_core.domain.model import Binding, ColumnRule, Incremental

TEXT, ENUM, NUMBER, BOOLEAN, DATE, DATETIME, TIME, OTHER = (
    "text",
    "enum",
    "number",
    "boolean",
    "date",
    "datetime",
    "time",
    "other",
)


def column_kind(type_: sa.types.TypeEngine[Any]) -> str:
    """Which family a reflected column type belongs to; decides which rules can apply."""
    if isinstance(type_, sa.Boolean):
        return BOOLEAN
    if isinstance(type_, sa.Enum):  # before String: an Enum is a String with fixed labels
        return ENUM
    if isinstance(type_, sa.String):
        return TEXT
    if isinstance(type_, sa.Integer | sa.Numeric | sa.Float):
        return NUMBER
    if isinstance(type_, sa.DateTime):
        return DATETIME
    if isinstance(type_, sa.Date):
        return DATE
    if isinstance(type_, sa.Time):
        return TIME
    return OTHER


ORDERABLE = {TEXT, ENUM, NUMBER, DATE, DATETIME, TIME}
# What an incremental column may be: its order is the order rows arrive in, the same in Python
# and in every warehouse (text is not: its order depends on a collation). A day needs a date.
INCREMENTAL_KINDS = {NUMBER, DATE, DATETIME}
DAY_KINDS = {DATE, DATETIME}


def incremental_column(table: sa.Table, incremental: Incremental) -> sa.Column[Any]:
    """The reflected incremental column, or `InvalidIncremental` naming the field to fix."""
    column = _find_column(table, incremental.column)
    where = f"{table.schema}.{table.name}" if table.schema else table.name
    if column is None:
        available = ", ".join(sorted(c.name for c in table.c))
        raise InvalidIncremental(
            f"column {incremental.column} not found in table {where} (columns: {available})",
            "binding.incremental.column",
        )
    kind = column_kind(column.type)
    if kind not in INCREMENTAL_KINDS:
        raise InvalidIncremental(
            f"{column.name} is {_type_name(column.type)}; an incremental column must be a number, "
            "a date or a date-time (its values must order the rows as they arrive)",
            "binding.incremental.column",
        )
    if incremental.partition == "day" and kind not in DAY_KINDS:
        raise InvalidIncremental(
            f"partition day needs a date or date-time column; {column.name} is "
            f"{_type_name(column.type)}",
            "binding.incremental.partition",
        )
    return column


def check_incremental(engine: Engine, binding: Binding) -> None:
    """Raise `InvalidIncremental` when the binding's incremental column is missing from its
    table or cannot order it. A table that does not exist (yet) is not judged here."""
    if binding.incremental is None:
        return
    with engine.connect() as connection:
        try:
            table = _reflect(connection, binding.schema_, binding.table, binding.source)
        except TableNotFound:
            return
    incremental_column(table, binding.incremental)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bound_fits(kind: str, value: Any) -> bool:
    if kind == NUMBER:
        return _is_number(value)
    if kind == DATE:
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    if kind == DATETIME:
        return isinstance(value, dt.date)
    return False


def _allowed_fits(kind: str, values: Sequence[Any]) -> bool:
    if kind in (TEXT, ENUM):
        return all(isinstance(v, str) for v in values)
    if kind == NUMBER:
        return all(_is_number(v) for v in values)
    if kind == BOOLEAN:
        return all(isinstance(v, bool) for v in values)
    return False


def applicable_rules(rule: ColumnRule, kind: str, type_name: str) -> tuple[list[str], list[str]]:
    """Split a column's declared value rules into those that apply to its type and notes on
    those that do not.

    A rule that cannot apply (``min`` on a text column, ``pattern`` on a number, text allowed
    values on an integer column) does not fail the whole profile: the steward previewing a
    binding wants to see the other columns' numbers too. The column's validity is then not
    scored at all (scoring the remaining rules would overstate it) and the profile says why.
    """
    applied: list[str] = []
    problems: list[str] = []
    for name in rule.value_rules:
        if name == "pattern":
            ok = kind == TEXT
            why = f"pattern needs a text column, {rule.name} is {type_name}"
        elif name == "allowed_values":
            ok = _allowed_fits(kind, rule.allowed_values or [])
            why = (
                f"allowed_values {rule.allowed_values!r} cannot be compared with "
                f"{rule.name} ({type_name})"
            )
        else:
            bound = getattr(rule, name)
            ok = _bound_fits(kind, bound)
            why = (
                f"{name} {bound!r} needs a numeric or date column of the same kind, "
                f"{rule.name} is {type_name}"
            )
        (applied if ok else problems).append(name if ok else f"{name}: {why}")
    return applied, problems


def _reflect(connection: Connection, schema: str | None, table: str, source: str) -> sa.Table:
    """The bound table, always qualified by its schema: a binding without one means the
    connection's default schema, named explicitly, so an unqualified name can never resolve
    through the search path to a catalog table (PostgreSQL searches `pg_catalog` first)."""
    inspector = sa.inspect(connection)
    if schema is None and connection.dialect.name == "postgresql":
        schema = inspector.default_schema_name
    if not inspector.has_table(table, schema=schema):
        where = f"{schema}.{table}" if schema else table
        raise TableNotFound(f"table {where} not found in source {source!r}")
    columns = inspector.get_columns(table, schema=schema)
    return sa.Table(
        table,
        sa.MetaData(),
        *[sa.Column(c["name"], c["type"]) for c in columns],
        schema=schema,
    )


def _unique_by_constraint(connection: Connection, table: sa.Table) -> set[str]:
    """Columns that alone form the primary key or a unique constraint. The warehouse enforces
    that their non-null values are distinct, so their distinct count is their non-null count and
    costs nothing. Unique indexes are ignored (they can be partial or on expressions)."""
    inspector = sa.inspect(connection)
    out: set[str] = set()
    try:
        primary = inspector.get_pk_constraint(table.name, schema=table.schema)
        uniques = inspector.get_unique_constraints(table.name, schema=table.schema)
    except NotImplementedError:
        return out
    for columns in [primary.get("constrained_columns") or []] + [
        u.get("column_names") or [] for u in uniques
    ]:
        if len(columns) == 1:
            out.add(columns[0])
    return out


def _find_column(table: sa.Table, name: str) -> sa.Column[Any] | None:
    if name in table.c:
        return table.c[name]
    matches = [c for c in table.c if c.name.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _type_name(type_: sa.types.TypeEngine[Any]) -> str:
    try:
        return str(type_).lower()
    except Exception:  # some reflected types cannot render without a dialect
        return type(type_).__name__.lower()
