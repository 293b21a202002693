"""Benchmark: mdstudio's push-down profile against the floor, the naive way and pandas.

Builds (once) a PostgreSQL table of 5,000,000 rows and 8 mixed columns (ids, UUID references,
emails with nulls and invalid values, country codes, amounts, timestamps, statuses, free text),
then runs, each in a fresh Python process so client peak memory is its own:

  count(*)            one scan, the floor
  mdstudio            the profile of all 8 columns (service_layer.profiling.profile_table)
  one pass, no dist.  one aggregate with the same counts, rules and min/max, no distinct count
  one pass + DISTINCT the same with COUNT(DISTINCT) on every column (the textbook shape)
  naive               one query per metric per column
  pandas              read the table, compute the same metrics in memory

and prints wall time, ratio to the floor and to the no-distinct pass, client peak RSS and the
database backend's peak private memory (backend plus its parallel workers, sampled from /proc,
so run this on the database host). It also checks that mdstudio, naive and pandas agree.

A single run is noisy on a shared machine: `--rounds N` (3 by default) runs the methods N times,
alternating (every method once per round), and prints each method's median, and each round's
mdstudio / one-pass ratio beside the median ratio. `--explain` prints EXPLAIN ANALYZE of
mdstudio's two statements and of the no-distinct pass, to see where the time goes.

Usage:
    python bench/profile.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/prof_bench]
                            [--rows 5000000] [--rebuild] [--skip pandas,naive] [--rounds 3]
                            [--explain]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mdstudio_core.adapters import warehouse  # noqa: E402
from mdstudio_core.domain.model import Binding  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/prof_bench"
TABLE = "bench_orders"
UUID_RE = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"

BINDING = Binding.model_validate(
    {
        "source": "bench",
        "table": TABLE,
        "columns": [
            {"name": "id", "unique": True, "min": 1},
            {"name": "customer_ref", "pattern": UUID_RE},
            {"name": "email", "pattern": EMAIL_RE},
            {"name": "country", "pattern": "^[A-Z]{2}$"},
            {"name": "amount", "min": 0, "max": 1000},
            {
                "name": "created_at",
                "min": "2020-01-01T00:00:00+00:00",
                "max": "2030-01-01T00:00:00+00:00",
            },
            {
                "name": "status",
                "allowed_values": ["new", "paid", "shipped", "cancelled", "refunded"],
            },
            {"name": "note", "nullable": True},
        ],
    }
)

BUILD_SQL = """
DROP TABLE IF EXISTS public.{table};
CREATE TABLE public.{table} AS
SELECT g AS id,
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
       ELSE 'note ' || md5((g % 200000)::text) || ' ünïcode' END AS note
FROM generate_series(1::bigint, {rows}::bigint) g;
VACUUM ANALYZE public.{table};
"""


# ------------------------------------------------------------------------------------------
# Methods (each runs in its own process and prints one JSON line)
# ------------------------------------------------------------------------------------------


def _engine(url: str) -> sa.Engine:
    return warehouse.create_engine(url, pool_size=1, max_overflow=0)


def _settings(connection: sa.Connection) -> None:
    """The same session settings mdstudio uses, so the SQL references are comparable."""
    for name, value in warehouse.POSTGRES_SETTINGS.items():
        connection.execute(sa.select(sa.func.set_config(name, value, True)))


def _reflected(connection: sa.Connection) -> sa.Table:
    return warehouse._reflect(connection, None, TABLE, "bench")


def method_floor(url: str) -> dict[str, Any]:
    with _engine(url).begin() as connection:
        _settings(connection)
        n = connection.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar_one()
    return {"row_count": n}


def method_mdstudio(url: str) -> dict[str, Any]:
    from mdstudio_core.service_layer.profiling import BoundEntity, profile_table

    engine = _engine(url)
    [result] = profile_table(
        [BoundEntity("bench.orders", BINDING)], engine_for=lambda _source: engine
    )
    metrics = {
        c.name: [c.n, c.non_null, c.distinct, c.valid, str(c.min), str(c.max)]
        for c in result.columns
    }
    return {"metrics": metrics, "quality_score": result.quality_score, "sql": result.sql}


def _pass(url: str, with_distinct: bool) -> dict[str, Any]:
    engine = _engine(url)
    with engine.begin() as connection:
        _settings(connection)
        table = _reflected(connection)
        # Every column in one aggregate: counts, all value rules (once per row) and min/max.
        statements = warehouse.build_profile_statements(
            table,
            BINDING.columns,
            "postgresql",
            high_cardinality={column.name for column in BINDING.columns},
        )
        statement = statements.row_pass
        if with_distinct:
            extra = []
            for spec in statements.specs:
                col = table.c[spec.column.name]
                value = sa.collate(col, "C") if spec.kind == warehouse.TEXT else col
                extra.append(sa.func.count(sa.distinct(value)).label(f"d_{spec.index}"))
            statement = statement.add_columns(*extra)
        row = connection.execute(statement).mappings().one()
    return {"row_count": row["n"]}


def method_pass_no_distinct(url: str) -> dict[str, Any]:
    return _pass(url, with_distinct=False)


def method_pass_count_distinct(url: str) -> dict[str, Any]:
    return _pass(url, with_distinct=True)


def method_naive(url: str) -> dict[str, Any]:
    """One query per metric per column, the way a hand-written profiler usually starts."""
    engine = _engine(url)
    hooks = warehouse.hooks_for("postgresql")
    metrics: dict[str, list[Any]] = {}
    with engine.begin() as connection:
        _settings(connection)
        table = _reflected(connection)
        statements = warehouse.build_profile_statements(table, BINDING.columns, "postgresql")
        for spec in statements.specs:
            col = table.c[spec.column.name]
            ordered = sa.collate(col, "C") if spec.kind == warehouse.TEXT else col
            n = connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            nn = connection.execute(sa.select(sa.func.count(col))).scalar_one()
            d = connection.execute(sa.select(sa.func.count(sa.distinct(ordered)))).scalar_one()
            condition = warehouse._rule_condition(spec, col, hooks)
            v = (
                connection.execute(
                    sa.select(sa.func.count()).select_from(table).where(condition)
                ).scalar_one()
                if condition is not None
                else None
            )
            low = connection.execute(sa.select(sa.func.min(ordered))).scalar_one()
            high = connection.execute(sa.select(sa.func.max(ordered))).scalar_one()
            metrics[spec.rule.name] = [n, nn, d, v, _plain(low), _plain(high)]
    return {"metrics": metrics}


def method_pandas(url: str) -> dict[str, Any]:
    """Read the whole table into a DataFrame and compute the same metrics in memory."""
    import pandas as pd

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        frame = pd.read_sql_query(sa.text(f"SELECT * FROM {TABLE}"), connection)
    metrics: dict[str, list[Any]] = {}
    for rule in BINDING.columns:
        series = frame[rule.name]
        present = series.dropna()
        valid = None
        if rule.value_rules:
            ok = pd.Series(True, index=present.index)
            if rule.pattern is not None:
                ok &= present.astype(str).str.contains(rule.pattern, regex=True)
            if rule.allowed_values is not None:
                ok &= present.isin(rule.allowed_values)
            if rule.min is not None:
                ok &= present >= _comparable(rule.min, present)
            if rule.max is not None:
                ok &= present <= _comparable(rule.max, present)
            valid = int(ok.sum())
        metrics[rule.name] = [
            len(series),
            len(present),
            int(present.nunique()),
            valid,
            _plain(present.min()),
            _plain(present.max()),
        ]
    return {"metrics": metrics}


def _comparable(bound: Any, series: Any) -> Any:
    import pandas as pd

    if hasattr(bound, "isoformat") and str(series.dtype).startswith("datetime"):
        stamp = pd.Timestamp(bound)
        tz = getattr(series.dtype, "tz", None)
        if tz is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize(tz)  # the session time zone of the bench is UTC
        return stamp
    return bound


def _plain(value: Any) -> str:
    """Render min/max the way the profile's JSON does, so the methods can be compared."""
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # pandas reads NUMERIC as float; the profile prints -50, not -50.0
    from mdstudio_core.service_layer.profiling.measuring import _jsonable

    return str(_jsonable(value))


METHODS = {
    "floor": ("SELECT count(*)  (floor)", method_floor),
    "mdstudio": ("mdstudio profile, 8 columns", method_mdstudio),
    "pass_no_distinct": ("one pass, no distinct", method_pass_no_distinct),
    "pass_count_distinct": ("one pass + COUNT(DISTINCT) x8", method_pass_count_distinct),
    "naive": ("naive, 1 query/metric/column", method_naive),
    "pandas": ("pandas (read + compute)", method_pandas),
}


def run_child(method: str, url: str) -> None:
    started = time.perf_counter()
    payload = METHODS[method][1](url)
    payload["wall_s"] = time.perf_counter() - started
    payload["client_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(payload, default=str))


# ------------------------------------------------------------------------------------------
# Backend memory: private memory (RssAnon) of the backends on the bench database and their
# parallel workers, summed per sample, peak over the run.
# ------------------------------------------------------------------------------------------


class BackendMemory(threading.Thread):
    def __init__(self, database: str) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.peak_kb = 0
        self.stop = threading.Event()

    def _processes(self) -> list[tuple[int, str]]:
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("postgres: "):
                out.append((int(entry), cmdline))
        return out

    @staticmethod
    def _anon_kb(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("RssAnon:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self.stop.is_set():
            processes = self._processes()
            backends = {pid for pid, cmd in processes if re.search(rf" {self.database} ", cmd)}
            workers = {
                pid
                for pid, cmd in processes
                if (m := re.search(r"parallel worker for PID (\d+)", cmd))
                and int(m.group(1)) in backends
            }
            total = sum(self._anon_kb(pid) for pid in backends | workers)
            self.peak_kb = max(self.peak_kb, total)
            self.stop.wait(0.02)


def run_method(method: str, url: str, database: str) -> dict[str, Any]:
    monitor = BackendMemory(database)
    monitor.start()
    process = subprocess.run(
        [sys.executable, __file__, "--child", method, "--url", url],
        capture_output=True,
        text=True,
    )
    monitor.stop.set()
    monitor.join()
    line = next((x for x in process.stdout.splitlines() if x.startswith("RESULT ")), None)
    if process.returncode != 0 or line is None:
        return {"error": (process.stderr or process.stdout).strip().splitlines()[-1:]}
    payload = json.loads(line[len("RESULT ") :])
    payload["backend_peak_mb"] = monitor.peak_kb / 1024
    return payload


def median_results(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each method's median wall time over the rounds and its largest memory (the rest from
    its last round); a method that failed in any round shows that failure."""
    merged: dict[str, dict[str, Any]] = {}
    for method in rounds[0]:
        runs = [done[method] for done in rounds]
        failed = next((run for run in runs if "error" in run), None)
        if failed is not None:
            merged[method] = failed
            continue
        merged[method] = {
            **runs[-1],
            "wall_s": statistics.median(run["wall_s"] for run in runs),
            "client_peak_mb": max(run["client_peak_mb"] for run in runs),
            "backend_peak_mb": max(run["backend_peak_mb"] for run in runs),
        }
    return merged


def build(url: str, rows: int, rebuild: bool) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(sa.text("SELECT to_regclass(:t)"), {"t": TABLE}).scalar()
        current = (
            connection.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar_one()
            if exists
            else None
        )
        if current == rows and not rebuild:
            print(f"using existing {TABLE} ({rows:,} rows)")
            return
        print(f"building {TABLE} with {rows:,} rows ...", flush=True)
        started = time.perf_counter()
        for statement in BUILD_SQL.format(table=TABLE, rows=rows).split(";"):
            if statement.strip():
                connection.execute(sa.text(statement))
        print(f"built in {time.perf_counter() - started:.1f} s")


def ensure_database(url: str) -> None:
    target = sa.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        found = connection.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": target.database}
        ).scalar()
        if not found:
            connection.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


def explain(url: str) -> None:
    """EXPLAIN ANALYZE of mdstudio's statements and of the one-pass reference, each in the
    session settings mdstudio uses."""
    engine = _engine(url)
    with engine.begin() as connection:
        _settings(connection)
        table = _reflected(connection)
        high = warehouse.hooks_for("postgresql").high_cardinality(connection, table)
        unique = warehouse._unique_by_constraint(connection, table)
        statements = warehouse.build_profile_statements(
            table,
            BINDING.columns,
            "postgresql",
            high_cardinality=high,
            unique_by_constraint=unique,
        )
        reference = warehouse.build_profile_statements(
            table,
            BINDING.columns,
            "postgresql",
            high_cardinality={column.name for column in BINDING.columns},
        ).row_pass
        for name, statement in (
            ("mdstudio row pass", statements.row_pass),
            ("mdstudio distinct pass", statements.distinct_pass),
            ("one pass, no distinct", reference),
        ):
            if statement is None:
                continue
            compiled = statement.compile(dialect=engine.dialect)
            plan = connection.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params
            ).scalars()
            print(f"-- {name}")
            for line in plan:
                print(f"   {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("MDSTUDIO_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--skip", default="", help="comma-separated methods to skip")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child, args.url)
        return

    ensure_database(args.url)
    build(args.url, args.rows, args.rebuild)
    if args.explain:
        explain(args.url)
    database = sa.make_url(args.url).database or ""
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    rounds: list[dict[str, dict[str, Any]]] = []
    for number in range(1, args.rounds + 1):
        done: dict[str, dict[str, Any]] = {}
        for method in METHODS:
            if method in skip:
                continue
            print(f"round {number}: running {method} ...", flush=True)
            done[method] = run_method(method, args.url, database)
        rounds.append(done)
    results = median_results(rounds)

    floor = results.get("floor", {}).get("wall_s")
    reference = results.get("pass_no_distinct", {}).get("wall_s")
    print()
    print(f"PostgreSQL profile benchmark, {args.rows:,} rows x 8 columns, {os.cpu_count()} CPUs")
    header = (
        f"{'method':<32} {'wall s':>8} {'x floor':>8} {'x 1-pass':>9} "
        f"{'client MB':>10} {'backend MB':>11}"
    )
    print(header)
    print("-" * len(header))
    for method, payload in results.items():
        label = METHODS[method][0]
        if "error" in payload:
            print(f"{label:<32} failed: {payload['error']}")
            continue
        wall = payload["wall_s"]
        print(
            f"{label:<32} {wall:>8.2f} "
            f"{(wall / floor if floor else float('nan')):>8.1f} "
            f"{(wall / reference if reference else float('nan')):>9.2f} "
            f"{payload['client_peak_mb']:>10.0f} {payload['backend_peak_mb']:>11.0f}"
        )
    ratios = [
        done["mdstudio"]["wall_s"] / done["pass_no_distinct"]["wall_s"]
        for done in rounds
        if "wall_s" in done.get("mdstudio", {}) and "wall_s" in done.get("pass_no_distinct", {})
    ]
    if ratios:
        each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        print(
            f"\nmdstudio / one pass, no distinct: median {statistics.median(ratios):.2f} "
            f"of {len(ratios)} alternating rounds ({each})"
        )
    print()
    print(f"wall s: median of {len(rounds)} alternating rounds; memory: the largest.")
    print("backend MB: peak private memory (RssAnon) of the backend and its parallel workers;")
    print("shared buffers are not counted. client MB: peak RSS of the Python process.")
    md, naive, pandas_ = (
        results.get(k, {}).get("metrics") for k in ("mdstudio", "naive", "pandas")
    )
    if md:
        for other_name, other in (("naive", naive), ("pandas", pandas_)):
            if other:
                diffs = {c: (md[c], other[c]) for c in md if md[c] != other[c]}
                verdict = "agree" if not diffs else f"DIFFER: {diffs}"
                print(f"mdstudio vs {other_name}: metrics {verdict}")
        print(f"mdstudio quality_score: {results['mdstudio']['quality_score']}")
        for name, values in md.items():
            print(
                f"  {name:<13} n={values[0]} non_null={values[1]} distinct={values[2]} "
                f"valid={values[3]} min={values[4]} max={values[5]}"
            )
    if "mdstudio" in results and "sql" in results["mdstudio"]:
        print()
        print("mdstudio SQL:")
        print(results["mdstudio"]["sql"])


if __name__ == "__main__":
    main()
