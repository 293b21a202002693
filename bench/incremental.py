"""Benchmark: an incremental profile against a full one, on PostgreSQL.

Builds (once) a table shaped like bench/profile.py's (8 mixed columns, the same rules) plus a
load timestamp `loaded_at` (indexed: the incremental column), with `--rows` rows (20,000,000 by
default), then, without and with an index on the unique column `id`:

  full profile         the table's first profile (mode full: it keeps the state)
  plain pass           one aggregate with the same counts, rules and min/max (no distinct),
                       the floor a profile that reads every row cannot beat
  + append             `--new-percent` % new rows (1 %), whose ids fall between earlier ones,
                       so the uniqueness probe has work to do
  incremental pass     reads the new rows, checks the earlier ones, merges

and prints, side by side, each one's wall time and the rows PostgreSQL read for it
(`pg_stat_user_tables`: sequential plus index fetches), the incremental pass's share of the
full profile (target: at most 5 %), how it checked the new ids (`index` or `scan`), and whether
its result equals a fresh full profile of the table (it must). `--explain` prints EXPLAIN
ANALYZE of each statement of the incremental pass.

Usage:
    python bench/incremental.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/inc_bench]
                                [--rows 20000000] [--new-percent 1] [--rebuild] [--explain]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.profile import BINDING as PROFILE_BINDING  # noqa: E402
from bench.profile import ensure_database  # noqa: E402
from mdstudio_core.adapters import warehouse  # noqa: E402
from mdstudio_core.adapters.incremental import Increment, measure_incremental  # noqa: E402
from mdstudio_core.domain.model import Binding  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/inc_bench"
TABLE = "bench_events"
BINDING = Binding.model_validate(
    {
        **PROFILE_BINDING.to_json(),
        "table": TABLE,
        "incremental": {"column": "loaded_at"},
    }
)

# bench/profile.py's rows, with even ids (the appended rows take odd ones in between) and a
# load timestamp one second apart.
ROWS_SQL = """
SELECT {id} AS id,
  md5((g % 4000000)::text)::uuid::text AS customer_ref,
  CASE WHEN g % 10 = 0 THEN NULL
       WHEN g % 37 = 0 THEN 'not-an-email-' || g
       ELSE 'user' || (g % 1000003) || '@example' || (g % 50) || '.com' END AS email,
  (ARRAY['DE','FR','US','GB','IT','ES','NL','BE','xx','USA'])[1 + (g * 7) % 10] AS country,
  round(((g * 7919) % 100000)::numeric / 100 - 50, 2) AS amount,
  timestamptz '2020-01-01 00:00:00+00'
    + ((g * 104729) % 157680000) * interval '1 second' AS created_at,
  (ARRAY['new','paid','shipped','cancelled','refunded','unknown'])[1 + (g * 13) % 6] AS status,
  CASE WHEN g % 5 = 0 THEN NULL
       ELSE 'note ' || md5((g % 200000)::text) || ' ünïcode' END AS note,
  timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS loaded_at
FROM generate_series({first}::bigint, {last}::bigint) g
"""


def build(engine: sa.Engine, rows: int, rebuild: bool) -> None:
    with engine.connect() as connection:
        exists = connection.execute(sa.text("SELECT to_regclass(:t)"), {"t": TABLE}).scalar()
        current = (
            connection.execute(
                sa.text(f"SELECT count(*) FROM {TABLE} WHERE id % 2 = 0")
            ).scalar_one()
            if exists
            else None
        )
    if current == rows and not rebuild:
        print(f"using existing {TABLE} ({rows:,} rows)")
        drop_appended(engine)
        return
    print(f"building {TABLE} with {rows:,} rows ...", flush=True)
    started = time.perf_counter()
    with engine.connect() as connection:
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
        select = ROWS_SQL.format(id="2 * g", first=1, last=rows)
        connection.execute(sa.text(f"CREATE TABLE {TABLE} AS {select}"))
        connection.exec_driver_sql(f"CREATE INDEX {TABLE}_loaded_at ON {TABLE} (loaded_at)")
        connection.exec_driver_sql(f"VACUUM ANALYZE {TABLE}")
    print(f"built in {time.perf_counter() - started:.1f} s", flush=True)


def drop_appended(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        connection.execute(sa.text(f"DELETE FROM {TABLE} WHERE id % 2 = 1"))
        connection.exec_driver_sql(f"VACUUM ANALYZE {TABLE}")


def append(engine: sa.Engine, rows: int, percent: float) -> int:
    """`percent` % new rows after the newest, their odd ids spread over the earlier ones."""
    count = max(1, int(rows * percent / 100))
    stride = max(1, rows // count)
    select = ROWS_SQL.format(
        id=f"(((g - {rows}) * {stride}) % {rows}) * 2 + 1", first=rows + 1, last=rows + count
    )
    with engine.connect() as connection:
        connection.execute(sa.text(f"INSERT INTO {TABLE} {select}"))
        connection.exec_driver_sql(f"ANALYZE {TABLE}")
    return count


def set_id_index(engine: sa.Engine, present: bool) -> None:
    with engine.connect() as connection:
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {TABLE}_id")
        if present:
            connection.exec_driver_sql(f"CREATE INDEX {TABLE}_id ON {TABLE} (id)")
        connection.exec_driver_sql(f"ANALYZE {TABLE}")


def rows_read(engine: sa.Engine) -> int:
    """Rows PostgreSQL read from the table so far (sequential scans and index fetches). The
    measured work's connections are closed first (`timed`): a backend reports its counts when
    it ends, where an idle one may wait ten seconds."""
    time.sleep(1.0)
    with engine.connect() as connection:
        connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        value = connection.execute(
            sa.text(
                "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
                " FROM pg_stat_user_tables WHERE relname = :t"
            ),
            {"t": TABLE},
        ).scalar_one()
    return int(value)


def timed(admin: sa.Engine, engine: sa.Engine, work: Any) -> tuple[Any, float, int]:
    engine.dispose()
    before = rows_read(admin)
    started = time.perf_counter()
    result = work()
    wall = time.perf_counter() - started
    engine.dispose()
    return result, wall, rows_read(admin) - before


def plain_pass(engine: sa.Engine) -> int:
    """bench/profile.py's `one pass, no distinct`: every column's counts, rules and min/max in
    one aggregate."""
    with engine.begin() as connection:
        for name, value in warehouse.POSTGRES_SETTINGS.items():
            connection.execute(sa.select(sa.func.set_config(name, value, True)))
        table = warehouse._reflect(connection, None, TABLE, "bench")
        statements = warehouse.build_profile_statements(
            table,
            BINDING.columns,
            "postgresql",
            high_cardinality={column.name for column in BINDING.columns},
        )
        return int(connection.execute(statements.row_pass).mappings().one()["n"])


def profile(engine: sa.Engine, state: Any = None) -> Increment:
    assert BINDING.incremental is not None
    return measure_incremental(
        engine,
        TABLE,
        BINDING.columns,
        BINDING.incremental,
        source="bench",
        timeout_s=None,
        state=state,
        full_reason=None if state is not None else "benchmark: the first profile",
    )


def legacy_profile(engine: sa.Engine) -> warehouse.TableMetrics:
    """The table's full profile as a binding without `incremental` takes it (bench/profile.py's
    `mdstudio` row): distinct values of every column, no state."""
    return warehouse.measure_table(engine, TABLE, BINDING.columns, source="bench", timeout_s=None)


def counts(increment: Increment) -> list[tuple[Any, ...]]:
    return [
        (c.name, c.n, c.non_null, c.distinct, c.valid, str(c.min), str(c.max))
        for c in increment.metrics.columns
    ]


def explain(engine: sa.Engine, increment: Increment) -> None:
    """EXPLAIN ANALYZE of each statement the pass ran, in one snapshot as the pass had."""
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            for name, value in warehouse.POSTGRES_SETTINGS.items():
                connection.execute(sa.select(sa.func.set_config(name, value, True)))
            for name, statement in increment.statements:
                compiled = statement.compile(dialect=engine.dialect)
                plan = connection.exec_driver_sql(
                    "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params
                ).scalars()
                print(f"  -- {name}")
                for line in plan:
                    print(f"     {line}")


def variant(
    engine: sa.Engine, admin: sa.Engine, rows: int, percent: float, id_index: bool, show: bool
) -> dict:
    drop_appended(admin)
    set_id_index(admin, id_index)
    _legacy, legacy_s, legacy_rows = timed(admin, engine, lambda: legacy_profile(engine))
    full, full_s, full_rows = timed(admin, engine, lambda: profile(engine))
    _, plain_s, plain_rows = timed(admin, engine, lambda: plain_pass(engine))
    added = append(admin, rows, percent)
    step, step_s, step_rows = timed(admin, engine, lambda: profile(engine, full.state))
    if show:
        explain(engine, step)
    fresh = profile(engine)
    return {
        "id index": id_index,
        "legacy": (legacy_s, legacy_rows),
        "full": (full_s, full_rows),
        "plain": (plain_s, plain_rows),
        "incremental": (step_s, step_rows),
        "added": added,
        "mode": step.mode,
        "full_reason": step.full_reason,
        "probes": step.probes,
        "logical_rows_read": (full.rows_read, step.rows_read),
        "equal": counts(step) == counts(fresh)
        and step.metrics.row_count == fresh.metrics.row_count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("MDSTUDIO_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--new-percent", type=float, default=1.0)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    ensure_database(args.url)
    engine = warehouse.create_engine(args.url, pool_size=2, max_overflow=0)
    admin = sa.create_engine(args.url, isolation_level="AUTOCOMMIT")
    build(admin, args.rows, args.rebuild)
    results = [
        variant(engine, admin, args.rows, args.new_percent, id_index, args.explain)
        for id_index in (False, True)
    ]
    drop_appended(admin)
    print()
    print(
        f"PostgreSQL incremental profile, {args.rows:,} rows x 8 columns + {args.new_percent:g} %"
        f" new rows, {os.cpu_count()} CPUs"
    )
    header = f"{'index on id':<12} {'pass':<18} {'wall s':>8} {'rows read':>14} {'x full':>8}"
    print(header)
    print("-" * len(header))
    for result in results:
        full_s = result["full"][0]
        for name in ("legacy", "full", "plain", "incremental"):
            wall, read = result[name]
            label = {
                "legacy": "full, no state",
                "full": "full profile",
                "plain": "plain aggregate",
                "incremental": "incremental",
            }
            print(
                f"{'yes' if result['id index'] else 'no':<12} {label[name]:<18} {wall:>8.2f} "
                f"{read:>14,} {wall / full_s:>8.3f}"
            )
        print(
            f"{'':<12} incremental: mode {result['mode']}"
            f"{' (' + result['full_reason'] + ')' if result['full_reason'] else ''}, "
            f"{result['added']:,} new rows, probes {result['probes']}, "
            f"rows_read recorded {result['logical_rows_read'][1]:,} "
            f"(full {result['logical_rows_read'][0]:,}), "
            f"equals a fresh full profile: {'yes' if result['equal'] else 'NO'}"
        )
    print(
        "full profile: the first profile of the binding with `incremental` (it keeps the state;"
        " distinct counts only for unique columns); full, no state: the same binding without"
        " `incremental`, as bench/profile.py profiles it (distinct counts of every column)."
    )
    for name, label in (("full", "full profile"), ("legacy", "full, no state")):
        met = all(r["incremental"][0] <= 0.05 * r[name][0] for r in results)
        print(f"target incremental <= 5 % of {label}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
