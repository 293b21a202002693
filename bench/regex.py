"""Patterns on SQLite: Python's `re` (before) against RE2 (now).

    python bench/regex.py [--rows 200000]

1. The backtracking case: ``^(a+)+$`` over n a's and a mismatch, as SQLite's ``REGEXP`` under a
   0.3 s progress-handler timeout. With ``re`` the time doubles with each character and the
   timeout cannot fire inside the Python call; the 40-character time is extrapolated from the
   measured doubling. With RE2, the 40-character case is measured through `measure_table` under
   a 1 s timeout.
2. A demo-like workload: a table of e-mails and currency codes with the demo's defects, every
   row through ``REGEXP`` with each engine (the row pass's per-row shape), and the Python call
   alone.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from mdstudio_core.adapters import warehouse
from mdstudio_core.domain.model import ColumnRule
from mdstudio_core.domain.patterns import matches

EVIL = "^(a+)+$"
DEMO_PATTERNS = {"email": r"^\S+@\S+\.[a-z]+$", "currency": "^[A-Z]{3}$"}


def _regexp(
    search: Callable[[str], Callable[[str], object]],
) -> Callable[[str, str | None], int | None]:
    def regexp(pattern: str, value: str | None) -> int | None:
        return None if value is None else int(search(pattern)(value) is not None)

    return regexp


RE = _regexp(lambda pattern: re.compile(pattern).search)
RE2 = _regexp(lambda pattern: lambda value: matches(pattern, value) or None)


def _connection(regexp: Callable[[str, str | None], int | None]) -> sqlite3.Connection:
    connection = sqlite3.connect(":memory:")
    connection.create_function("regexp", 2, regexp, deterministic=True)
    return connection


def _timed_evil(
    regexp: Callable[[str, str | None], int | None], length: int, timeout_s: float
) -> float:
    """Seconds for ``value REGEXP '^(a+)+$'`` on one value under a progress-handler timeout."""
    connection = _connection(regexp)
    deadline = time.monotonic() + timeout_s
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
    started = time.perf_counter()
    with contextlib.suppress(sqlite3.OperationalError):  # interrupted: only between calls
        connection.execute("SELECT ? REGEXP ?", ("a" * length + "!", EVIL)).fetchone()
    return time.perf_counter() - started


def backtracking() -> None:
    print("1. ^(a+)+$ over n a's and '!', SQLite REGEXP, 0.3 s timeout")
    times = {n: _timed_evil(RE, n, 0.3) for n in range(16, 25)}
    for n, seconds in times.items():
        print(f"   re   n={n:2}  {seconds:8.3f} s")
    ratio = (times[24] / times[18]) ** (1 / 6)
    extrapolated = times[24] * ratio ** (40 - 24)
    print(
        f"   re   n=40  ~{extrapolated:,.0f} s (~{extrapolated / 86400:.1f} days), "
        f"x{ratio:.2f} per character, the timeout never fires"
    )
    with tempfile.TemporaryDirectory() as directory:
        engine = warehouse.create_engine(f"sqlite:///{Path(directory) / 'wh.db'}")
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE codes (code TEXT)")
            connection.exec_driver_sql(
                "INSERT INTO codes VALUES (?)", [("a" * 40,), ("a" * 39 + "!",), ("b" * 40,)]
            )
        started = time.perf_counter()
        metrics = warehouse.measure_table(
            engine, "codes", [ColumnRule(name="code", pattern=EVIL)], timeout_s=1
        )
        seconds = time.perf_counter() - started
        engine.dispose()
    print(
        f"   re2  n=40  {seconds:8.3f} s for the whole profile (measure_table, 1 s timeout), "
        f"valid {metrics.columns[0].valid} of {metrics.columns[0].non_null}"
    )


def _demo_rows(rows: int) -> list[tuple[str | None, str]]:
    """E-mails and currencies with the demo warehouse's kinds of defects."""
    currencies = ["EUR", "EUR", "USD", "GBP", "usd", "XXX", "eur", ""]
    out: list[tuple[str | None, str]] = []
    for k in range(rows):
        email = None if k % 7 == 0 else f"user{k}@example.com" if k % 11 else f"user{k}@example"
        out.append((email, currencies[k % len(currencies)]))
    return out


def workload(rows: int) -> None:
    print(f"2. demo-like workload: {rows:,} rows, e-mail and currency patterns, every row")
    data = _demo_rows(rows)
    for name, regexp in (("re", RE), ("re2", RE2)):
        connection = _connection(regexp)
        connection.execute("CREATE TABLE t (email TEXT, currency TEXT)")
        connection.executemany("INSERT INTO t VALUES (?, ?)", data)
        started = time.perf_counter()
        valid = connection.execute(
            "SELECT count(CASE WHEN email REGEXP :email THEN 1 END),"
            " count(CASE WHEN currency REGEXP :currency THEN 1 END) FROM t",
            DEMO_PATTERNS,
        ).fetchone()
        seconds = time.perf_counter() - started
        calls = sum(1 for email, _ in data if email is not None) + rows
        print(
            f"   {name:4} {seconds:7.3f} s  {1e6 * seconds / calls:6.2f} µs per REGEXP call, "
            f"valid {valid}"
        )
    values = [email for email, _ in data if email is not None]
    for name, search in (
        ("re", re.compile(DEMO_PATTERNS["email"]).search),
        ("re2", lambda value: matches(DEMO_PATTERNS["email"], value)),
    ):
        started = time.perf_counter()
        for value in values:
            search(value)
        seconds = time.perf_counter() - started
        print(f"   {name:4} search() alone: {1e6 * seconds / len(values):6.2f} µs per value")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    backtracking()
    workload(args.rows)


if __name__ == "__main__":
    main()
