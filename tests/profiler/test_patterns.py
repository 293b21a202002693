"""The pattern language: RE2 syntax restricted to what PostgreSQL also runs, with the same
meaning. Refused patterns are invalid input naming the field; every accepted pattern compiles
on PostgreSQL and agrees with RE2 value by value."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from mdstudio_core.domain.model import ColumnRule
from mdstudio_core.domain.patterns import PatternError, check_pattern, matches
from tests.support.cli_helpers import run_cli
from tests.support.factories import metadata_request, store_snapshot

ACCEPTED = [
    r"^\S+@\S+\.[a-z]+$",
    r"^[\w.+-]+@[\w-]+\.[\w.]+$",
    r"^\d{4}-\d{2}-\d{2}$",
    r"^[A-Z]{3}$",
    r"(?i)^[a-z]+$",
    r"^(a+)+$",
    r"^(?:EUR|USD|GBP)$",
    r"[[:alpha:]][[:digit:]]*",
    r"[^]a]",
    r"[a-]\]",
    r"\Aab*?c{2,}d{1,3}e{255}?",
    "中|😀",
    "ß$",
    r"a\.b\-c\\d\t",
    "a|",
    "x}",
    # bracket expressions away from the start, with a leading ] or -, escapes as range ends
    r"ab[^x]",
    r"[-a]",
    r"[]-a]",
    r"[^-\d]",
    r"[\.-a]",
    r"[+-\.]",
    r"[a-cx-z]",
    r"(?i)a+",
    r"^X",
    r"X*",
]

# (pattern, what the refusal names)
REFUSED = [
    (r"(\w)\1", r"\1 at position 4 is not accepted: backreferences"),
    (
        r"(?=a)",
        "(?= at position 0 is not accepted: the only group constructs are (...) and (?:...); "
        "lookaround, named groups and inline flags do not run on both engines ((?i) is accepted "
        "at the very start only)",
    ),
    (r"a(?!b)", "(?! at position 1"),
    (r"(?<=a)b", "(?< at position 0"),
    (r"(?P<user>[a-z]+)@", "(?P at position 0"),
    (r"(?<user>a)", "(?< at position 0"),
    (r"a(?i)b", "(?i at position 1"),
    (r"(?i:a)", "(?i at position 0"),
    (r"(?s).", "(?s at position 0"),
    (r"\p{L}", r"\p at position 0 is not accepted: Unicode classes"),
    (r"\PL", r"\P at position 0"),
    (r"^a\z", r"\z at position 2 is not accepted: is known to RE2 only"),
    (r"^a\Z", r"\Z at position 2 is not accepted: is known to PostgreSQL only"),
    (r"\bword\b", r"\b at position 0 is not accepted: means a backspace in PostgreSQL"),
    (r"\x41", r"\x at position 0"),
    (r"\Q.\E", r"\Q at position 0"),
    (r"\y", r"\y at position 0 is not accepted: it is not an escape both engines share"),
    (r"a{256}", "{256} at position 1 is not accepted: PostgreSQL repeats at most 255 times"),
    (r"a{,3}", "{ at position 1 is not accepted: it does not start a repetition"),
    (r"^*", "* at position 1 is not accepted: there is nothing before it to repeat"),
    (r"a++", "+ at position 2"),
    (r"[[.a.]]", "[ at position 1 is not accepted: inside brackets only [:name:] classes"),
    (r"[[:^alpha:]]", "[ at position 1"),
    (r"[[:nope:]]", "[:nope:] at position 1 is not accepted"),
    (r"[\d-z]", "- at position 3 is not accepted: a range must join two single characters"),
    (r"[a-\w]", "- at position 2 is not accepted: a range must end at a single character"),
    (
        r"(?i)é",
        "(?i) at position 0 is not accepted: case-insensitive matching of non-ASCII letters "
        "differs (PostgreSQL folds ASCII letters only); spell both cases out, e.g. [éÉ]",
    ),
    ("([a-z]", "not a regular expression RE2 accepts: missing )"),
    ("[a-z", "[ at position 0 is not accepted: the bracket expression is not closed"),
    ("a\\", "\\ at position 1 is not accepted: the pattern ends in a lone backslash"),
    ("[\\", "\\ at position 1 is not accepted: the pattern ends in a lone backslash"),
    ("[\\d", "[ at position 0 is not accepted: the bracket expression is not closed"),
    ("[a-", "[ at position 0 is not accepted: the bracket expression is not closed"),
    (r"[\d-z", "- at position 3 is not accepted: a range must join two single characters"),
    (r"[]\d-z]", "- at position 4 is not accepted: a range must join two single characters"),
    (r"[^a-\d]", "- at position 3 is not accepted: a range must end at a single character"),
    (r"[a-c-e]", "- at position 4 is not accepted: a range must join two single characters"),
    (r"\A*", "* at position 2 is not accepted: there is nothing before it to repeat"),
    (r"*a", "* at position 0 is not accepted: there is nothing before it to repeat"),
    (r"(?i)*", "* at position 4 is not accepted: there is nothing before it to repeat"),
    (r"(?:*a)", "* at position 3 is not accepted: there is nothing before it to repeat"),
    (r"(*a)", "* at position 1 is not accepted: there is nothing before it to repeat"),
    ("\\d\\", "\\ at position 2 is not accepted: the pattern ends in a lone backslash"),
    ("[a]\\", "\\ at position 3 is not accepted: the pattern ends in a lone backslash"),
    (
        r"x[[=a=]]",
        "[ at position 2 is not accepted: inside brackets only [:name:] classes are accepted "
        "([.x.] and [=x=] do not run on both engines); write \\[ for a literal [",
    ),
    (r"[[:word:][:nope:]]", "[:nope:] at position 9 is not accepted: not a character class both"),
]


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_accepted_patterns(pattern: str) -> None:
    assert check_pattern(pattern) == pattern
    assert ColumnRule(name="c", pattern=pattern).pattern == pattern


@pytest.mark.parametrize(("pattern", "message"), REFUSED)
def test_refused_patterns_name_the_construct(pattern: str, message: str) -> None:
    with pytest.raises(PatternError) as refused:
        check_pattern(pattern)
    assert message in str(refused.value)
    with pytest.raises(ValidationError, match="pattern"):
        ColumnRule(name="c", pattern=pattern)


def test_a_backtracking_pattern_runs_in_linear_time() -> None:
    """`^(a+)+$` takes Python's `re` about 2^n steps on n a's and a mismatch; RE2, linear."""
    started = time.perf_counter()
    for length in (40, 10_000, 1_000_000):
        assert not matches("^(a+)+$", "a" * length + "!")
        assert matches("^(a+)+$", "a" * length)
    assert time.perf_counter() - started < 1


def test_dot_matches_a_newline_as_in_postgresql() -> None:
    assert matches("^a.b$", "a\nb")
    assert not matches("a$", "a\n")  # `$` is the end, not a final newline


@pytest.mark.parametrize(("pattern", "_"), REFUSED[:8])
def test_submission_of_a_refused_pattern_is_exit_2_naming_the_field(
    store_url: str, monkeypatch: pytest.MonkeyPatch, tenant, pattern: str, _: str
) -> None:
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", str(tenant))
    binding = {"table": "orders", "columns": [{"name": "id"}, {"name": "code", "pattern": pattern}]}
    engine = sa.create_engine(store_url)
    before = store_snapshot(engine)
    result = run_cli(
        ["approvals", "submit", "--file", "-", "--user", "alice"],
        stdin=json.dumps(metadata_request(binding=binding)),
    )
    assert result.exit_code == 2, result.stderr
    assert "payload.binding.columns[1].pattern" in result.stderr
    assert store_snapshot(engine) == before
    engine.dispose()


# -- every accepted pattern means the same on PostgreSQL -------------------------------------

SAMPLES = [
    "", "a", "A", "ab", "aB", "a\nb", "\n", "é", "É", "Ж", "9", "٣", " ", "\t", "_", "-", "]",
    "[", "{", "}", "aaa", "\\", ".", "k", "S", "x@y.io", "ab9", "a-b", "[a]", "a{2}", "ba",
    "aab", "中文", "😀@中.de", "Straße", "EUR", "2024-01-31", "a" * 40 + "!",
]  # fmt: skip
TOKENS = [
    "a", "b", "k", "é", "Ж", ".", "^", "$", "|", "(", ")", "(?:", "(?i)", "*", "+", "?",
    "{2}", "{1,3}", "{2,}", "}", "[", "]", "[^", "-", r"\d", r"\w", r"\s", r"\S", r"\W",
    r"\.", r"\-", r"\]", r"\\", r"\n", r"\A", "[:alpha:]", "[:digit:]", "[:space:]", " ",
]  # fmt: skip


def _agree_on_postgres(connection: sa.Connection, pattern: str) -> None:
    got = connection.execute(
        sa.text('SELECT s COLLATE "C" ~ :p FROM unnest(CAST(:s AS text[])) s'),
        {"p": pattern, "s": SAMPLES},
    ).scalars()
    expected = [matches(pattern, sample) for sample in SAMPLES]
    assert list(got) == expected, pattern


@pytest.fixture(scope="module")
def pg(pg_engine: Engine):
    with pg_engine.connect() as connection:
        yield connection


@pytest.mark.postgres
@pytest.mark.parametrize("pattern", ACCEPTED)
def test_accepted_patterns_agree_with_postgresql(pg: sa.Connection, pattern: str) -> None:
    _agree_on_postgres(pg, pattern)


@pytest.mark.postgres
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=7).map("".join))
def test_whatever_is_accepted_runs_on_postgresql_with_the_same_meaning(
    pg: sa.Connection, pattern: str
) -> None:
    try:
        check_pattern(pattern)
    except PatternError:
        return
    _agree_on_postgres(pg, pattern)
