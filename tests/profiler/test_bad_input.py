"""Bad input gives a clear error, or a profile that says what was not scored; never a partial
profile."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from mdstudio_core.adapters import warehouse
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import (
    Binding,
    ColumnRule,
    ProfileLimits,
    Tier,
    Trigger,
    stored_binding,
)
from mdstudio_core.service_layer.profiling import (
    BoundEntity,
    group_by_table,
    limits_for,
    profile_table,
    source_engines,
)

from .conftest import unique_table_name


def _table(engine: Engine, rows: int = 3) -> str:
    name = unique_table_name()
    table = sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer),
        sa.Column("email", sa.Text),
        sa.Column("amount", sa.Float),
        sa.Column("day", sa.Date),
    )
    with engine.begin() as connection:
        table.create(connection)
        if rows:
            connection.execute(
                table.insert(),
                [
                    {
                        "id": k,
                        "email": f"u{k}@x.io" if k % 3 else "bad",
                        "amount": k * 1.5,
                        "day": dt.date(2024, 1, 1 + k % 28),
                    }
                    for k in range(rows)
                ],
            )
    return name


def _hex_emails_table(pg_engine: Engine, rows: int) -> str:
    """A PostgreSQL table of `rows` ids, each with the md5 of its id as its `email`."""
    name = unique_table_name()
    with pg_engine.begin() as connection:
        connection.execute(
            sa.text(
                f'CREATE TABLE "{name}" AS SELECT g AS id, md5(g::text) AS email '
                f"FROM generate_series(1, {rows}) g"
            )
        )
    return name


def _binding(table: str, *columns: dict) -> Binding:
    return Binding.model_validate({"source": "wh", "table": table, "columns": list(columns)})


def _run(engine: Engine, binding: Binding, **kwargs):
    [result] = profile_table(
        [BoundEntity("sales.customer", binding)], engine_for=lambda _s: engine, **kwargs
    )
    return result


# -- sources ---------------------------------------------------------------------------------


def test_unknown_source_names_the_variable() -> None:
    with pytest.raises(warehouse.UnknownSource, match="MDSTUDIO_SOURCE_SALES_DW_URL"):
        warehouse.resolve_source_url("sales_dw", {})


def test_source_from_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    monkeypatch.setenv("MDSTUDIO_SOURCE_DEMO_URL", url)
    settings = Settings.from_env()
    try:
        engine = warehouse.get_engine("demo", settings.sources)
        assert warehouse.get_engine("Demo", settings.sources) is engine  # cached, any case
        name = _table(engine)
        binding = Binding(source="demo", table=name, columns=[ColumnRule(name="id")])
        [result] = profile_table(
            [BoundEntity("demo.key", binding)], engine_for=source_engines(settings)
        )
        assert result.quality_score == 100.0 and result.source == "demo"
    finally:
        warehouse.dispose_engines()


def test_source_that_cannot_connect() -> None:
    engine = warehouse.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    with pytest.raises(warehouse.SourceUnavailable, match="cannot connect to source 'wh'"):
        _run(engine, _binding("t", {"name": "id"}))


# -- tables and columns ----------------------------------------------------------------------


def test_missing_table(sqlite_engine: Engine) -> None:
    with pytest.raises(warehouse.TableNotFound, match="table nosuch not found in source 'wh'"):
        _run(sqlite_engine, _binding("nosuch", {"name": "id"}))


def test_missing_column(sqlite_engine: Engine) -> None:
    name = _table(sqlite_engine)
    with pytest.raises(warehouse.ColumnNotFound, match="column phone not found"):
        _run(sqlite_engine, _binding(name, {"name": "id"}, {"name": "phone"}))


def test_identifiers_are_validated_before_any_sql() -> None:
    with pytest.raises(ValidationError):
        _binding("orders; DROP TABLE x", {"name": "id"})
    with pytest.raises(ValidationError):
        _binding("orders", {"name": 'id" OR 1=1 --'})


# -- rules -----------------------------------------------------------------------------------


def test_invalid_regular_expression_is_rejected_by_the_binding() -> None:
    with pytest.raises(ValidationError, match="bracket expression is not closed"):
        ColumnRule(name="email", pattern="([a-z")
    with pytest.raises(ValidationError, match="not a regular expression RE2 accepts: missing "):
        ColumnRule(name="email", pattern="([a-z]")


@pytest.mark.parametrize(
    "engine_name", ["sqlite_engine", pytest.param("pg_engine", marks=pytest.mark.postgres)]
)
def test_stored_pattern_outside_the_language_fails_the_profile_naming_the_column(
    request: pytest.FixtureRequest, engine_name: str
) -> None:
    """A binding stored before the pattern language was narrowed still reads back, and its
    profile fails with an error naming the column, on every dialect."""
    engine = request.getfixturevalue(engine_name)
    name = _table(engine)
    binding = stored_binding(
        {
            "source": "wh",
            "table": name,
            "columns": [{"name": "id"}, {"name": "email", "pattern": "(?P<user>[a-z]+)@"}],
        }
    )
    with pytest.raises(warehouse.InvalidPattern, match=r"column email: pattern .*is refused: "):
        _run(engine, binding)


@pytest.mark.parametrize(
    ("column", "rule", "expected"),
    [
        ("email", {"min": 3}, "min"),
        ("email", {"max": 3, "pattern": "@"}, "max"),
        ("id", {"pattern": "^[0-9]+$"}, "pattern"),
        ("id", {"allowed_values": ["a", "b"]}, "allowed_values"),
        ("day", {"min": 5}, "min"),
        ("amount", {"min": "2024-01-01"}, "min"),
    ],
)
def test_rule_that_cannot_apply_is_reported_not_scored(
    sqlite_engine: Engine, column: str, rule: dict, expected: str
) -> None:
    name = _table(sqlite_engine)
    result = _run(sqlite_engine, _binding(name, {"name": column, **rule}))
    profile = result.columns[0]
    assert profile.validity is None and profile.valid is None
    assert "validity" not in profile.scored
    assert expected in profile.rules_not_applied
    assert profile.rules == []
    assert any(f"validity rule not applied: {expected}" in w for w in result.warnings)
    assert result.quality_score == 100.0  # completeness still scored


def test_empty_table(sqlite_engine: Engine) -> None:
    name = _table(sqlite_engine, rows=0)
    result = _run(sqlite_engine, _binding(name, {"name": "id", "unique": True}))
    assert result.row_count == 0
    assert result.quality_score is None
    assert result.score_note == "table is empty"
    assert result.columns[0].min is None


# -- limits ----------------------------------------------------------------------------------


def test_sqlite_timeout_is_a_clear_failure(sqlite_engine: Engine) -> None:
    name = _table(sqlite_engine, rows=20_000)
    with pytest.raises(warehouse.ProfileTimeout, match="statement timeout"):
        _run(
            sqlite_engine,
            _binding(name, {"name": "email", "pattern": "@"}),
            limits=ProfileLimits(timeout_s=0),
        )


def test_sqlite_progress_handler_interrupts_a_running_statement(sqlite_engine: Engine) -> None:
    name = _table(sqlite_engine, rows=20_000)
    hooks = warehouse.hooks_for("sqlite")
    with sqlite_engine.connect() as connection:
        with pytest.raises(warehouse.ProfileTimeout), hooks.limits(connection, 1e-6):
            connection.execute(
                sa.text(f'SELECT count(*) FROM "{name}" a, "{name}" b WHERE a.email REGEXP \'@\'')
            ).all()
        # the handler is removed afterwards: the connection works without a limit
        assert connection.execute(sa.text("SELECT 1")).scalar() == 1


@pytest.mark.postgres
def test_postgres_timeout_is_a_clear_failure(pg_engine: Engine) -> None:
    name = _hex_emails_table(pg_engine, 300_000)
    binding = _binding(name, {"name": "id"}, {"name": "email", "pattern": "^[0-9a-f]{32}$"})
    with pytest.raises(warehouse.ProfileTimeout, match=r"timeout of 0\.001 s.*no partial profile"):
        _run(pg_engine, binding, limits=ProfileLimits(timeout_s=0.001))
    # the database cancelled the statement itself (not only the budget check)
    hooks = warehouse.hooks_for("postgresql")
    with (
        pg_engine.connect() as connection,
        connection.begin(),
        pytest.raises(warehouse.ProfileTimeout),
        hooks.limits(connection, 0.001),
    ):
        connection.execute(
            sa.text(f"SELECT count(*) FROM \"{name}\" WHERE email ~ '^[0-9a-f]{{32}}$'")
        ).all()


def test_sampling_is_refused_where_unsupported(sqlite_engine: Engine) -> None:
    name = _table(sqlite_engine)
    with pytest.raises(warehouse.ProfileError, match="sampling is not supported on sqlite"):
        _run(sqlite_engine, _binding(name, {"name": "id"}), limits=ProfileLimits(sample_percent=10))


@pytest.mark.postgres
def test_postgres_sampling_is_recorded(pg_engine: Engine) -> None:
    name = _hex_emails_table(pg_engine, 100_000)
    binding = _binding(name, {"name": "id", "unique": True}, {"name": "email", "pattern": "a"})
    full = _run(pg_engine, binding)
    assert full.sample is None and full.row_count == 100_000
    sampled = _run(pg_engine, binding, limits=ProfileLimits(sample_percent=20))
    assert sampled.sample is not None
    assert sampled.sample.method.startswith("TABLESAMPLE SYSTEM REPEATABLE")
    assert sampled.sample.percent == 20 and sampled.sample.rows == sampled.row_count
    assert 0 < sampled.row_count < 100_000
    # both passes read the same sampled rows
    assert all(c.n == sampled.row_count for c in sampled.columns)
    assert sampled.columns[0].distinct == sampled.row_count
    assert "TABLESAMPLE system" in sampled.sql or "TABLESAMPLE SYSTEM" in sampled.sql


def test_limits_for_shared_table() -> None:
    settings = Settings(tier1_timeout_seconds=600, tier3_timeout_seconds=60, tier3_sample_percent=5)
    assert limits_for(settings, [Tier.TIER1, Tier.TIER3]) == ProfileLimits(60, None)
    assert limits_for(settings, [Tier.TIER3]) == ProfileLimits(60, 5)


# -- several entities on one table -----------------------------------------------------------


def test_one_table_profiled_once_for_several_entities(sqlite_engine: Engine) -> None:
    name = _table(sqlite_engine, rows=9)
    approval_id = uuid.uuid4()
    a = BoundEntity(
        "crm.customer_id", _binding(name, {"name": "id", "unique": True}), trigger=Trigger.APPROVAL
    )
    b = BoundEntity(
        "crm.email",
        _binding(name, {"name": "email", "pattern": "@"}, {"name": "id", "min": 5}),
        approval_id=approval_id,
        trigger=Trigger.APPROVAL,
    )
    assert list(group_by_table([a, b])) == [("wh", None, name)]
    first, second = profile_table([a, b], engine_for=lambda _s: sqlite_engine)
    assert [c.name for c in first.columns] == ["id"]
    assert [c.name for c in second.columns] == ["email", "id"]
    assert first.sql == second.sql and first.profiled_at == second.profiled_at
    assert first.quality_score == 100.0
    # email: 6 of 9 valid (k % 3 != 0); id >= 5: 4 of 9
    # email (0.4*1 + 0.3*6/9)/0.7 = 0.857142..., id (0.4 + 0.3*4/9)/0.7 = 0.761904... -> 80.95
    assert second.columns[0].valid == 6 and second.columns[1].valid == 4
    assert second.quality_score == 80.95
    assert second.approval_id == approval_id and second.trigger is Trigger.APPROVAL


def test_entities_on_different_tables_are_refused(sqlite_engine: Engine) -> None:
    a = BoundEntity("a", _binding("t1", {"name": "id"}))
    b = BoundEntity("b", _binding("t2", {"name": "id"}))
    with pytest.raises(ValueError, match="one table"):
        profile_table([a, b], engine_for=lambda _s: sqlite_engine)


@pytest.mark.postgres
def test_postgres_enum_column(pg_engine: Engine) -> None:
    """An enum is ordered by its labels, takes allowed_values (unknown labels match nothing),
    and a pattern does not apply to it."""
    name = unique_table_name()
    kind = f"{name}_status"
    with pg_engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TYPE \"{kind}\" AS ENUM ('new', 'paid', 'void')"))
        connection.execute(sa.text(f'CREATE TABLE "{name}" (status "{kind}")'))
        connection.execute(
            sa.text(f"INSERT INTO \"{name}\" VALUES ('paid'), ('new'), ('void'), (NULL), ('paid')")
        )
    binding = _binding(
        name, {"name": "status", "allowed_values": ["new", "paid", "refunded"], "unique": True}
    )
    result = _run(pg_engine, binding)
    status = result.columns[0]
    assert (status.n, status.non_null, status.distinct, status.valid) == (5, 4, 3, 3)
    assert (status.min, status.max) == ("new", "void")
    only_unknown = _run(pg_engine, _binding(name, {"name": "status", "allowed_values": ["x"]}))
    assert only_unknown.columns[0].valid == 0
    pattern = _run(pg_engine, _binding(name, {"name": "status", "pattern": "^p"}))
    assert pattern.columns[0].rules_not_applied == ["pattern"]


def test_the_warehouse_transaction_is_read_only_and_repeatable_read(pg_engine: Engine) -> None:
    """Both passes see one snapshot, and a profile can never write, whatever SQL it runs."""
    name = _table(pg_engine, rows=5)
    seen: list[tuple[str, str]] = []

    def record(connection, cursor, statement, parameters, context, executemany) -> None:
        if name in statement:
            with cursor.connection.cursor() as probe:
                probe.execute(
                    "SELECT current_setting('transaction_isolation'),"
                    " current_setting('transaction_read_only')"
                )
                seen.append(probe.fetchone())

    sa.event.listen(pg_engine, "after_cursor_execute", record)
    try:
        _run(pg_engine, _binding(name, {"name": "id", "unique": True}))
    finally:
        sa.event.remove(pg_engine, "after_cursor_execute", record)
    assert seen and set(seen) == {("repeatable read", "on")}


def test_a_binding_without_schema_never_reads_the_catalog(pg_engine: Engine) -> None:
    """`pg_authid` unqualified would resolve to `pg_catalog.pg_authid` (searched first); the
    profile reads the default schema's table of that name, or nothing."""
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS public.pg_authid")
    with pytest.raises(warehouse.TableNotFound):
        _run(pg_engine, _binding("pg_authid", {"name": "rolname"}))
    with pg_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE public.pg_authid (rolname text)")
        connection.exec_driver_sql("INSERT INTO public.pg_authid VALUES ('decoy')")
    try:
        result = _run(pg_engine, _binding("pg_authid", {"name": "rolname"}))
        assert result.row_count == 1 and result.columns[0].min == "decoy"
    finally:
        with pg_engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE public.pg_authid")
