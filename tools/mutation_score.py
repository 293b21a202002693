"""Print the kill rate of the last `mutmut run` (`make mutation`), from mutmut's own results.

mutmut 3 keeps, for each mutated file, `mutants/<path>.meta`: a JSON map from mutant name to
the exit code of the tests run against it (the codes are those of mutmut 3.8's `stats.py`).
The kill rate is killed / all mutants, where killed includes a timeout (the mutant made a test
loop until mutmut's CPU-time limit stopped it: the suite fails under it); a mutant no test
reaches ("no tests") counts against the rate, as does a survivor. Every mutant not killed must
be listed, with why, in tests/MUTATION_SURVIVORS.md; those that are not are counted (and
printed with --survivors).

Usage: python tools/mutation_score.py [--survivors] [--min-rate 85]
Exit status 1 when the rate is below --min-rate or a survivor is not listed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
SURVIVORS_FILE = ROOT / "tests" / "MUTATION_SURVIVORS.md"

KILLED = {1, 3, 37}  # a failing test, pytest's internal error, the type checker
TIMEOUT = {36, 24, -24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}
NOT_CHECKED = {None}
DETECTED = ("killed", "timeout")


def status(exit_code: int | None) -> str:
    for name, codes in (
        ("killed", KILLED),
        ("timeout", TIMEOUT),
        ("survived", SURVIVED),
        ("no tests", NO_TESTS),
        ("not checked", NOT_CHECKED),
    ):
        if exit_code in codes:
            return name
    return "other"  # suspicious, segfault, interrupted


def load_results(mutants: Path = MUTANTS) -> dict[str, dict[str, int | None]]:
    """{source file: {mutant name: exit code}} for every mutated file."""
    results = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            results[str(meta.relative_to(mutants).with_suffix(""))] = codes
    return results


def listed_survivors(path: Path = SURVIVORS_FILE) -> set[str]:
    """The mutant names tests/MUTATION_SURVIVORS.md accounts for (each in backticks)."""
    if not path.exists():
        return set()
    return set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", path.read_text()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survivors", action="store_true", help="print every surviving mutant")
    parser.add_argument("--min-rate", type=float, default=85.0, help="the target, in %%")
    args = parser.parse_args(argv)

    results = load_results()
    if not results:
        print("no mutmut results under mutants/: run `make mutation` first", file=sys.stderr)
        return 2
    total: Counter[str] = Counter()
    not_killed: list[str] = []
    for path, codes in results.items():
        counts = Counter(status(code) for code in codes.values())
        total.update(counts)
        killed = counts["killed"] + counts["timeout"]
        print(f"  {path:50} {killed:5} / {sum(counts.values()):5} killed")
        not_killed += [name for name, code in codes.items() if status(code) not in DETECTED]
    mutants = sum(total.values())
    killed = total["killed"] + total["timeout"]
    rate = 100 * killed / mutants
    print(
        f"kill rate: {killed}/{mutants} = {rate:.1f}% (of which timeouts {total['timeout']}; "
        f"survived {total['survived']}, no tests {total['no tests']}, "
        f"not checked {total['not checked']}, other {total['other']})"
    )
    listed = listed_survivors()
    unlisted = sorted(name for name in not_killed if name not in listed)
    stale = sorted(listed - set(not_killed))
    if args.survivors:
        for name in sorted(not_killed):
            print(f"    {name}" + ("" if name in listed else "  (not listed)"))
    print(
        f"survivors listed in {SURVIVORS_FILE.relative_to(ROOT)}: {len(not_killed) - len(unlisted)}"
        f", not listed: {len(unlisted)}, listed but killed or gone: {len(stale)}"
    )
    return 1 if rate < args.min_rate or unlisted else 0


if __name__ == "__main__":
    sys.exit(main())
