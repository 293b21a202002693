"""The pandas oracle: the same metrics computed in memory, by a different implementation.

It reads the rows the test inserted (never the warehouse) and implements the documented
semantics: ``pattern`` matches anywhere (``re.search``), ``allowed_values`` is membership,
``min``/``max`` are inclusive bounds, a value is valid when it satisfies every rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mdstudio_core.domain.model import ColumnRule


@dataclass(frozen=True)
class Expected:
    n: int
    non_null: int
    distinct: int
    valid: int | None
    min: Any
    max: Any


def oracle(values: list[Any], rule: ColumnRule, dtype: str) -> Expected:
    series = pd.Series(values, dtype=dtype)
    present = series.dropna()
    valid: int | None = None
    if rule.value_rules:
        ok = pd.Series(True, index=present.index)
        if rule.pattern is not None:
            compiled = re.compile(rule.pattern)
            ok &= present.map(lambda v: compiled.search(v) is not None).astype(bool)
        if rule.allowed_values is not None:
            ok &= present.isin(rule.allowed_values)
        if rule.min is not None:
            ok &= present >= rule.min
        if rule.max is not None:
            ok &= present <= rule.max
        valid = int(ok.sum())
    return Expected(
        n=len(series),
        non_null=len(present),
        distinct=int(present.nunique()),
        valid=valid,
        min=None if present.empty else _plain(present.min()),
        max=None if present.empty else _plain(present.max()),
    )


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return value
