"""The SQL a profile keeps is the statement with placeholders; the steward's values are kept
apart, as data, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from mdstudio_core.domain.model import Binding
from mdstudio_core.service_layer.profiling import BoundEntity, profile_table

from .conftest import unique_table_name

INJECTION = "\n```\n# Injected [link](http://x)"


@pytest.mark.parametrize(
    "engine_name", ["sqlite_engine", pytest.param("pg_engine", marks=pytest.mark.postgres)]
)
def test_values_are_parameters_not_sql_text(request: pytest.FixtureRequest, engine_name) -> None:
    engine: Engine = request.getfixturevalue(engine_name)
    name = unique_table_name()
    table = sa.Table(
        name, sa.MetaData(), sa.Column("code", sa.Text), sa.Column("amount", sa.Integer)
    )
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(
            table.insert(), [{"code": INJECTION, "amount": 5}, {"code": "EUR", "amount": -1}]
        )
    binding = Binding.model_validate(
        {
            "source": "wh",
            "table": name,
            "columns": [
                {"name": "code", "allowed_values": ["EUR", INJECTION], "pattern": "^[A-Z]+$"},
                {"name": "amount", "min": 0, "max": 987654},
            ],
        }
    )
    [result] = profile_table([BoundEntity("k", binding)], engine_for=lambda _s: engine)
    assert [c.valid for c in result.columns] == [1, 1]
    for value in ("Injected", "EUR", "^[A-Z]+$", "987654"):
        assert value not in result.sql
    assert ":param_" in result.sql
    assert set(result.sql_params) == {"row pass", "distinct pass"}
    values = [v for params in result.sql_params.values() for v in params.values()]
    assert {INJECTION, "EUR", "^[A-Z]+$", 987654} <= set(values)
    assert result.to_json()["sql_params"] == result.sql_params  # JSON as it is
