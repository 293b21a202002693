"""Warehouse access for profiling: sources from the environment, dialect hooks, and the SQL
push-down that measures every bound column of a table inside the warehouse.

Why it looks like this:

* Credentials never live in the catalog. A binding names a ``source``; its SQLAlchemy URL comes
  from ``MDSTUDIO_SOURCE_<NAME>_URL``.
* Nothing user-supplied is concatenated into SQL. Tables and columns are reflected and must exist;
  SQLAlchemy quotes the identifiers; patterns, allowed values and bounds travel as bound
  parameters.
* No row is pulled into Python. A table is measured by two statements, whatever the number of
  columns or of entities bound to it, in one read-only repeatable-read transaction; each returns
  at most one row per column, so client memory is flat whatever the table size.
* The shape follows where PostgreSQL spends its time (measured by ``bench/profile.py``): CPU in
  expressions (regexes above all) and in exact distinct counts, not in the scan.

  1. *Row pass*: one parallel aggregate with the row count and, for the high-cardinality
     columns, non-null, valid (all value rules, once per row) and min/max.
  2. *Distinct pass*: a ``UNION ALL`` with one branch per column, which PostgreSQL runs side by
     side under a Parallel Append:

     - *sorted* (high cardinality, known from the planner's statistics): ``COUNT(DISTINCT)``,
       one sort; a hash table would spill when nearly every value is distinct, and grouping
       first would save no regex evaluation.
     - *grouped* (everything else): ``GROUP BY column`` (a hash aggregate), then distinct,
       non-null, valid and min/max over the groups, weighted by group size: the rules run once
       per distinct value, and the row pass never touches the column.

  A column that alone is a primary key or unique constraint needs no distinct count at all.
* A pattern runs in linear time: SQLite matches it with RE2 (`patterns.matches`), whose time
  per value the statement timeout bounds; PostgreSQL runs its own ``~`` under
  ``statement_timeout``. The pattern language (`mdstudio_core.domain.patterns`) is what both
  run with the same meaning.
* Dialect differences are confined to a small hook table (`DialectHooks`): regex matching,
  code-point text ordering, statement timeout, sampling, cardinality hints. PostgreSQL and SQLite
  are built in; DuckDB, Snowflake, BigQuery or Trino only need an entry.

The package: `engines` (sources, engines, dialect hooks), `columns` (the reflected table and its
columns' kinds), `compiler` (the statements), `measure` (running them), `errors`.
"""

from mdstudio_core.adapters.warehouse.columns import (
    BOOLEAN,
    DATE,
    DATETIME,
    DAY_KINDS,
    ENUM,
    INCREMENTAL_KINDS,
    NUMBER,
    ORDERABLE,
    OTHER,
    TEXT,
    TIME,
    _reflect,
    _unique_by_constraint,
    applicable_rules,
    check_incremental,
    column_kind,
    incremental_column,
)
from mdstudio_core.adapters.warehouse.compiler import (
    ProfileStatements,
    _rule_condition,
    build_profile_statements,
    build_specs,
    render_sql,
)
from mdstudio_core.adapters.warehouse.engines import (
    DIALECT_HOOKS,
    POSTGRES_SETTINGS,
    DialectHooks,
    _pg_high_cardinality,
    create_engine,
    dispose_engines,
    get_engine,
    hooks_for,
    resolve_source_url,
)
from mdstudio_core.adapters.warehouse.errors import (
    ColumnNotFound,
    InvalidIncremental,
    InvalidPattern,
    ProfileError,
    ProfileTimeout,
    SourceUnavailable,
    TableNotFound,
    UnknownSource,
)
from mdstudio_core.adapters.warehouse.measure import (
    ColumnMetrics,
    TableMetrics,
    column_metrics,
    measure_table,
)

__all__ = [
    "BOOLEAN",
    "DATE",
    "DATETIME",
    "DAY_KINDS",
    "DIALECT_HOOKS",
    "ENUM",
    "INCREMENTAL_KINDS",
    "NUMBER",
    "ORDERABLE",
    "OTHER",
    "POSTGRES_SETTINGS",
    "TEXT",
    "TIME",
    "ColumnMetrics",
    "ColumnNotFound",
    "DialectHooks",
    "InvalidIncremental",
    "InvalidPattern",
    "ProfileError",
    "ProfileStatements",
    "ProfileTimeout",
    "SourceUnavailable",
    "TableMetrics",
    "TableNotFound",
    "UnknownSource",
    "_pg_high_cardinality",
    "_reflect",
    "_rule_condition",
    "_unique_by_constraint",
    "applicable_rules",
    "build_profile_statements",
    "build_specs",
    "check_incremental",
    "column_kind",
    "column_metrics",
    "create_engine",
    "dispose_engines",
    "get_engine",
    "hooks_for",
    "incremental_column",
    "measure_table",
    "render_sql",
    "resolve_source_url",
]
