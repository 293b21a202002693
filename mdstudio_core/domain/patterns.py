"""The pattern language of a column rule: RE2 syntax, restricted to what PostgreSQL's regular
expressions (AREs) also run, with the same meaning.

Why this language:

* A steward's pattern runs in the warehouse, over every distinct value of a column. Python's
  ``re`` backtracks: ``^(a+)+$`` over 40 characters would run for hours, and SQLite's
  timeout cannot interrupt a Python function. RE2 matches in time linear in the value, so the
  tier's timeout bounds every profile. It refuses what needs backtracking: backreferences and
  lookaround.
* PostgreSQL runs the same pattern with its own ``~``. A pattern it cannot compile would fail
  every profile there, and a construct it reads differently (``\\b`` is a backspace to it, a word
  boundary to RE2) would give other numbers on another warehouse. Such constructs are refused at
  submission, naming the construct, so a pattern either means the same everywhere or never
  enters the catalog.
* PostgreSQL evaluates the pattern in the ``C`` collation (see the warehouse adapter), where
  ``\\w``, ``\\d``, ``\\s`` and the ``[[:class:]]`` names are ASCII, as they are in RE2, and ``.``
  matches a newline in both (RE2's ``dot_nl``).

Two differences remain, both documented in the README: ``\\s`` also matches the vertical tab
(U+000B) on PostgreSQL (``[[:space:]]`` matches it on both), and under ``(?i)`` RE2 also folds
the Kelvin sign to ``k`` and the long s to ``s``.
"""

from __future__ import annotations

import functools
import re

import re2

# PostgreSQL's largest repetition count (RE_DUP_MAX); RE2 allows 1000.
MAX_REPEAT = 255

_SHORTHAND_CLASSES = frozenset("dDsSwW")
_CHARACTER_ESCAPES = frozenset("afnrtv")
_POSIX_CLASSES = frozenset(
    [
        "alnum",
        "alpha",
        "ascii",
        "blank",
        "cntrl",
        "digit",
        "graph",
        "lower",
        "print",
        "punct",
        "space",
        "upper",
        "word",
        "xdigit",
    ]
)
_REFUSED_ESCAPES = {
    "b": "means a backspace in PostgreSQL and a word boundary in RE2",
    "B": "means a backslash in PostgreSQL and not a word boundary in RE2",
    "z": "is known to RE2 only; end the pattern with $",
    "Z": "is known to PostgreSQL only; end the pattern with $",
    "x": "reads a different number of hex digits in each engine; write the character itself",
    "p": "Unicode classes do not exist in PostgreSQL",
    "P": "Unicode classes do not exist in PostgreSQL",
    "Q": "quoting does not exist in PostgreSQL; escape each character",
    "E": "quoting does not exist in PostgreSQL; escape each character",
    "C": "matching one byte does not exist in PostgreSQL",
}
_BOUND = re.compile(r"\{(\d+)(,(\d*))?\}")
_POSIX_CLASS = re.compile(r"\[:([a-z]+):\]")


class PatternError(ValueError):
    """The pattern is not in the accepted language; the message names the construct."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # absl would print every parse error on stderr
    options.dot_nl = True  # PostgreSQL's `.` matches a newline
    options.never_capture = True  # only "does it match" is asked
    return options


_OPTIONS = _options()


def matches(pattern: str, value: str) -> bool:
    """True when ``pattern`` matches somewhere in ``value``, in time linear in the value (RE2).
    Raises `PatternError` when RE2 does not compile the pattern."""
    return _compiled(pattern).search(value.encode()) is not None


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re2._Regexp:
    """The pattern compiled by RE2, cached (the warehouse asks once per value). Compiled from
    its UTF-8 bytes and matched against bytes: RE2 works in UTF-8 either way, and bytes skip the
    wrapper's mapping of byte offsets back to characters, a few times the cost of the match."""
    try:
        return re2.compile(pattern.encode(), _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(f"not a regular expression RE2 accepts: {reason}") from exc


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is in the accepted language, else raise `PatternError` naming
    the first construct outside it (and where)."""
    _check_portable(pattern)
    _compiled(pattern)
    return pattern


def _refuse(at: int, construct: str, why: str) -> PatternError:
    return PatternError(f"{construct} at position {at} is not accepted: {why}")


def _check_portable(pattern: str) -> None:
    """Walk the pattern once, refusing what PostgreSQL cannot run or reads differently. RE2
    then checks the structure (balanced parentheses, valid ranges, ...)."""
    i, end = 0, len(pattern)
    if pattern.startswith("(?i)"):
        if not pattern.isascii():
            raise _refuse(
                0,
                "(?i)",
                "case-insensitive matching of non-ASCII letters differs (PostgreSQL folds "
                "ASCII letters only); spell both cases out, e.g. [éÉ]",
            )
        i = 4
    repeatable = False  # is there an atom for a quantifier to repeat?
    while i < end:
        char = pattern[i]
        if char == "\\":
            i, repeatable = _escape(pattern, i)
        elif char == "[":
            i, repeatable = _bracket(pattern, i), True
        elif char == "(":
            if pattern.startswith("(?", i) and not pattern.startswith("(?:", i):
                raise _refuse(
                    i,
                    pattern[i : i + 3],
                    "the only group constructs are (...) and (?:...); lookaround, named groups "
                    "and inline flags do not run on both engines ((?i) is accepted at the very "
                    "start only)",
                )
            i, repeatable = i + (3 if pattern.startswith("(?:", i) else 1), False
        elif char in "*+?{":
            i = _quantifier(pattern, i, repeatable)
            repeatable = False
        else:  # `^ $ |` are not repeatable; `)`, `.` and literals are
            i, repeatable = i + 1, char not in "^$|"


def _quantifier(pattern: str, i: int, repeatable: bool) -> int:
    bound = _BOUND.match(pattern, i) if pattern[i] == "{" else None
    if pattern[i] == "{" and bound is None:
        raise _refuse(i, "{", "it does not start a repetition {m}, {m,} or {m,n}; write \\{")
    if not repeatable:
        raise _refuse(i, pattern[i], "there is nothing before it to repeat")
    if bound is not None:
        counts = [int(c) for c in (bound.group(1), bound.group(3)) if c]
        if max(counts) > MAX_REPEAT:
            raise _refuse(i, bound.group(0), f"PostgreSQL repeats at most {MAX_REPEAT} times")
        i = bound.end()
    else:
        i += 1
    return i + 1 if pattern.startswith("?", i) else i  # a lazy quantifier


def _escape(pattern: str, i: int) -> tuple[int, bool]:
    """An escape outside brackets; returns the next position and whether it is repeatable."""
    if i + 1 >= len(pattern):
        raise _refuse(i, "\\", "the pattern ends in a lone backslash")
    char = pattern[i + 1]
    if char == "A":
        return i + 2, False
    _escaped_character(pattern, i)
    return i + 2, True


def _escaped_character(pattern: str, i: int) -> None:
    """Accept ``\\d \\s \\w`` (and capitals), ``\\a \\f \\n \\r \\t \\v`` and an escaped ASCII
    punctuation character or space; refuse any other escape, saying why."""
    char = pattern[i + 1]
    if char in _SHORTHAND_CLASSES or char in _CHARACTER_ESCAPES:
        return
    if char.isascii() and not char.isalnum() and char.isprintable():
        return
    if char.isdigit():
        why = "backreferences and octal escapes do not run in linear time or on both engines"
    else:
        why = _REFUSED_ESCAPES.get(char, "it is not an escape both engines share")
    raise _refuse(i, f"\\{char}", why)


def _bracket(pattern: str, start: int) -> int:
    """A bracket expression ``[...]``; returns the position after its ``]``. A ``-`` makes a
    range only between two single characters; first or last it is literal."""
    i, end = start + 1, len(pattern)
    if pattern.startswith("^", i):
        i += 1
    previous = None
    if pattern.startswith("]", i):  # a leading ] is literal in both engines
        i, previous = i + 1, "character"
    while i < end and pattern[i] != "]":
        if pattern[i] == "-" and i + 1 < end and pattern[i + 1] != "]" and previous is not None:
            if previous != "character":
                raise _refuse(
                    i, "-", "a range must join two single characters; put a literal - first or last"
                )
            dash = i
            i, item = _bracket_item(pattern, i + 1)
            if item != "character":
                raise _refuse(dash, "-", "a range must end at a single character")
            previous = "range"
        else:
            i, previous = _bracket_item(pattern, i)
    if i >= end:
        raise _refuse(start, "[", "the bracket expression is not closed")
    return i + 1


def _bracket_item(pattern: str, i: int) -> tuple[int, str]:
    """One member of a bracket expression: (next position, "character" or "class")."""
    char = pattern[i]
    if char == "\\":
        if i + 1 >= len(pattern):
            raise _refuse(i, "\\", "the pattern ends in a lone backslash")
        _escaped_character(pattern, i)
        return i + 2, "class" if pattern[i + 1] in _SHORTHAND_CLASSES else "character"
    if char == "[":
        named = _POSIX_CLASS.match(pattern, i)
        if named is None:
            raise _refuse(
                i,
                "[",
                "inside brackets only [:name:] classes are accepted ([.x.] and [=x=] do not "
                "run on both engines); write \\[ for a literal [",
            )
        if named.group(1) not in _POSIX_CLASSES:
            raise _refuse(i, named.group(0), "not a character class both engines know")
        return named.end(), "class"
    return i + 1, "character"
