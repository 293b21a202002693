"""Incremental profiles through a real profiling run (`run_profiles`), on SQLite and PostgreSQL
warehouses and stores: what a pass reads, what it records (mode, window, rows read, why a full
one ran, how new values of a unique column were checked), when it must be full, and that its
result is a full profile's. tests/store/test_incremental_exactness.py drives random changes."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mdstudio_core.adapters import warehouse
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Binding, Tier
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.profiling import (
    BoundEntity,
    ProfileTarget,
    profile_table,
    run_profiles,
)
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.cli_helpers import run_cli
from tests.support.factories import approve_metadata, measured, person

KEY = "sales.events.amount"
T0 = dt.datetime(2024, 3, 1, 8)
COLUMNS = [
    {"name": "id", "unique": True, "min": 1},
    {"name": "email", "pattern": "^[a-z]+@x[.]com$"},
    {"name": "amount", "min": 0, "max": 100},
    {"name": "code", "nullable": True, "allowed_values": ["a", "b"]},
]


def binding(**incremental: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"source": "wh", "table": "events", "columns": COLUMNS}
    if incremental:
        raw["incremental"] = incremental
    return raw


class Warehouse:
    """The `events` table of a test warehouse, and the changes the tests make to it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url)
        self.postgres = self.engine.dialect.name == "postgresql"
        self.next_id = 1

    def create(self, indexed: tuple[str, ...] = (), table: str = "events") -> None:
        with self.engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            connection.exec_driver_sql(
                f"CREATE TABLE {table} (id integer, loaded_at timestamp, email varchar(40), "
                "amount numeric(10, 2), code varchar(4))"
            )
            for column in indexed:
                connection.exec_driver_sql(f"CREATE INDEX {table}_{column} ON {table} ({column})")

    def append(self, count: int, at: dt.datetime, **values: Any) -> None:
        rows = []
        for i in range(count):
            rows.append(
                {
                    "id": self.next_id,
                    "loaded_at": at + dt.timedelta(minutes=i),
                    "email": "ann@x.com" if i % 3 else "bad",
                    "amount": (self.next_id * 7) % 120,
                    "code": ["a", "b", "z", None][i % 4],
                    **values,
                }
            )
            self.next_id += 1
        self.run("INSERT INTO events VALUES (:id, :loaded_at, :email, :amount, :code)", rows=rows)

    def run(self, sql: str, rows: list[dict[str, Any]] | None = None, **params: Any) -> None:
        """One change, committed; on PostgreSQL its statistics are reported at once, as a
        session's are when it goes idle."""
        with self.engine.begin() as connection:
            connection.execute(sa.text(sql), rows if rows is not None else params)
            if self.postgres:
                connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")

    def dispose(self) -> None:
        self.engine.dispose()


@pytest.fixture
def wh(warehouse_url):
    found = Warehouse(warehouse_url)
    found.create()
    yield found
    found.dispose()


@pytest.fixture
def sqlite_url(sqlite_template, tmp_path) -> str:
    """A store of its own on SQLite, for tests of the warehouse side (the store's behaviour is
    tested on both backends by the tests that take `engine`)."""
    path = tmp_path / "store.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def store(sqlite_url):
    engine = create_store_engine(sqlite_url)
    yield engine
    engine.dispose()


def settings_for(wh: Warehouse, **variables: str) -> Settings:
    return Settings.from_env({"MDSTUDIO_SOURCE_WH_URL": wh.url, **variables})


def run(engine, tenant, wh: Warehouse, *, key: str = KEY, full: bool = False, **variables: str):
    outcome = run_profiles(
        UnitOfWork(engine),
        settings_for(wh, **variables),
        tenant,
        [ProfileTarget(key, full=full)],
        run_id=str(uuid.uuid4()),
    )
    assert outcome.failed == {}, outcome.failed
    [saved] = outcome.profiles
    return saved.result


def fresh_full(wh: Warehouse, raw_binding: dict[str, Any]):
    [result] = profile_table(
        [BoundEntity(KEY, Binding.model_validate(raw_binding))],
        engine_for=lambda _source: warehouse.create_engine(wh.url),
    )
    return result


def test_a_pass_after_an_append_reads_the_new_rows_and_equals_a_full_profile(store, tenant, wh):
    wh.create(indexed=("loaded_at",))  # without, every statement reads the whole table
    wh.append(40, T0)
    raw = binding(column="loaded_at")
    approve_metadata(store, tenant, key=KEY, binding=raw)

    first = run(store, tenant, wh)
    assert (first.mode, first.full_reason) == (
        "full",
        "first profile of this table with binding.incremental",
    )
    assert (first.watermark_before, first.watermark_after) == (None, "2024-03-01T08:39:00")

    wh.append(5, T0 + dt.timedelta(hours=2))
    second = run(store, tenant, wh)
    assert second.mode == "incremental" and second.full_reason is None
    assert (second.watermark_before, second.watermark_after) == (
        "2024-03-01T08:39:00",
        "2024-03-01T10:04:00",
    )
    assert measured(second) == measured(fresh_full(wh, raw))
    assert second.row_count == 45
    # The same counts and score as a table bound without binding.incremental (which also
    # counts distinct values of columns not declared unique; uniqueness alone reads them).
    legacy = fresh_full(wh, binding())
    assert (legacy.quality_score, legacy.uniqueness) == (second.quality_score, second.uniqueness)
    assert [c.distinct for c in second.columns] == [45, None, None, None]
    assert second.probes == {"id": "range"}  # new ids lie above every earlier one
    assert second.rows_read < first.rows_read


def test_rows_at_the_watermark_may_still_arrive(store, tenant, wh):
    """A load timestamp shared by a batch committed in two parts: the rows at the watermark
    are read again by the next pass, never counted twice."""
    wh.append(10, T0)
    raw = binding(column="loaded_at")
    approve_metadata(store, tenant, key=KEY, binding=raw)
    run(store, tenant, wh)
    last = T0 + dt.timedelta(minutes=9)
    wh.append(3, last, loaded_at=last)
    again = run(store, tenant, wh)
    assert again.mode == "incremental", again.full_reason
    assert again.watermark_before == again.watermark_after == last.isoformat()
    assert measured(again) == measured(fresh_full(wh, raw))


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ("DELETE FROM events WHERE id = 3", "deleted"),
        ("UPDATE events SET email = 'ann@x.com' WHERE id = 1", "updated"),
        ("INSERT INTO events VALUES (99, '2024-03-01 08:00:30', 'x', 1, 'a')", "late"),
        ("UPDATE events SET loaded_at = '2024-03-01 07:00:00' WHERE id = 2", "updated"),
    ],
)
def test_the_safety_net_turns_a_pass_full_and_says_why(store, tenant, wh, change, says):
    """PostgreSQL's change counters tell of updates and deletes; elsewhere the count and the
    checksum of the rows below the watermark do; the count tells of late rows everywhere."""
    wh.append(10, T0)
    raw = binding(column="loaded_at")
    approve_metadata(store, tenant, key=KEY, binding=raw)
    run(store, tenant, wh)
    wh.run(change)
    wh.append(2, T0 + dt.timedelta(hours=1))
    result = run(store, tenant, wh)
    assert result.mode == "full"
    assert says in result.full_reason
    assert measured(result) == measured(fresh_full(wh, raw))
    after = run(store, tenant, wh)  # the full pass kept a state the next one trusts
    assert after.mode == "incremental", after.full_reason


def test_full_when_asked_when_due_and_when_the_binding_changes(store, tenant, wh):
    wh.append(10, T0)
    approve_metadata(store, tenant, key=KEY, binding=binding(column="loaded_at"))
    run(store, tenant, wh)
    asked = run(store, tenant, wh, full=True)
    assert (asked.mode, asked.full_reason) == ("full", "asked for (mdstudio profiles run --full)")
    assert run(store, tenant, wh).mode == "incremental"

    due = run(store, tenant, wh, MDSTUDIO_FULL_PROFILE_EVERY_DAYS="1e-10")
    assert due.mode == "full" and "MDSTUDIO_FULL_PROFILE_EVERY_DAYS (1e-10)" in due.full_reason

    approve_metadata(store, tenant, key=KEY, binding=binding(column="id"))
    changed = run(store, tenant, wh)
    assert changed.full_reason == "binding.incremental changed (loaded_at -> id)"
    rules = binding(column="id")
    rules["columns"] = [*COLUMNS[:3], {"name": "code", "allowed_values": ["a"]}]
    approve_metadata(store, tenant, key=KEY, binding=rules)
    assert run(store, tenant, wh).full_reason == "the bound columns or their rules changed"
    assert run(store, tenant, wh).mode == "incremental"


def test_every_field_of_the_table_shares_one_state(store, tenant, wh):
    """A run that profiles one field measures the columns of every field bound to the table,
    so a run of the other fields finds a state that serves them (no full pass in turn)."""
    wh.append(10, T0)
    approve_metadata(store, tenant, key=KEY, binding=binding(column="loaded_at"))
    other = "sales.events.code"
    narrow = {**binding(column="loaded_at"), "columns": [{"name": "code", "nullable": True}]}
    approve_metadata(store, tenant, key=other, binding=narrow, tier="tier2")
    run(store, tenant, wh)
    wh.append(2, T0 + dt.timedelta(hours=1))
    assert run(store, tenant, wh, key=other).mode == "incremental"
    wh.append(2, T0 + dt.timedelta(hours=2))
    assert run(store, tenant, wh).mode == "incremental"


def test_declarations_that_disagree_profile_in_full(store, tenant, wh):
    wh.append(4, T0)
    approve_metadata(store, tenant, key=KEY, binding=binding(column="loaded_at"))
    other = {**binding(column="id"), "columns": [{"name": "code", "nullable": True}]}
    approve_metadata(store, tenant, key="sales.events.code", binding=other, tier="tier2")
    result = run(store, tenant, wh)
    assert result.mode == "full"
    assert "declare different binding.incremental" in result.full_reason


def test_a_sampling_tier_profiles_in_full_and_keeps_no_state(store, tenant, warehouse_url):
    wh = Warehouse(warehouse_url)
    if not wh.postgres:
        pytest.skip("sampling is a PostgreSQL feature")
    wh.create()
    wh.append(10, T0)
    approve_metadata(store, tenant, key=KEY, binding=binding(column="loaded_at"))
    sampled = run(store, tenant, wh, MDSTUDIO_TIER1_SAMPLE_PERCENT="100")
    assert sampled.mode == "full" and "samples" in sampled.full_reason
    with UnitOfWork(store) as uow:
        assert uow.profile_states.get(tenant, "wh", None, "events") is None
    wh.dispose()


@pytest.mark.parametrize(("indexed", "method"), [((), "scan"), (("id",), "index")])
def test_new_values_of_a_unique_column_are_probed_against_the_earlier_rows(
    store, tenant, wh, indexed, method
):
    wh.create(indexed=("loaded_at", *indexed))
    wh.append(10, T0)
    raw = binding(column="loaded_at")
    approve_metadata(store, tenant, key=KEY, binding=raw)
    run(store, tenant, wh)
    wh.next_id = 5  # ids 5 and 6 again: duplicates of earlier rows, and 7..8 too
    wh.append(4, T0 + dt.timedelta(hours=1))
    result = run(store, tenant, wh)
    assert result.mode == "incremental", result.full_reason
    assert result.probes == {"id": method}
    [id_column] = [c for c in result.columns if c.name == "id"]
    assert (id_column.non_null, id_column.distinct) == (14, 10)
    assert measured(result) == measured(fresh_full(wh, raw))


def test_history_and_the_api_show_how_each_profile_was_taken(
    store_url, engine, uow, tenant, wh, monkeypatch
):
    wh.create(indexed=("loaded_at",))
    wh.append(10, T0)
    approve_metadata(engine, tenant, key=KEY, binding=binding(column="loaded_at"))
    run(engine, tenant, wh)
    wh.append(2, T0 + dt.timedelta(hours=1))
    run(engine, tenant, wh)
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    args = ["profiles", "history", KEY, "--tenant", str(tenant), "--user", "c"]
    history = run_cli([*args, "--json"]).json
    assert [h["mode"] for h in history] == ["incremental", "full"]
    newest, oldest = history
    assert newest["watermark_before"] == oldest["watermark_after"] == "2024-03-01T08:09:00"
    assert newest["rows_read"] < oldest["rows_read"] and newest["full_reason"] is None
    assert oldest["full_reason"] == "first profile of this table with binding.incremental"
    human = run_cli(args).stdout
    assert "MODE" in human and "incremental" in human and "ROWS_READ" in human
    secret, _ = tokens.create_token(uow, person(tenant, "c"))
    with TestClient(create_app(engine=engine)) as client:
        response = client.get(
            "/profiles", params={"entity": KEY}, headers={"Authorization": f"Bearer {secret}"}
        )
    assert response.status_code == 200
    items = response.json()["items"]
    assert [
        (i["mode"], i["watermark_before"], i["watermark_after"], i["rows_read"]) for i in items
    ] == [(h["mode"], h["watermark_before"], h["watermark_after"], h["rows_read"]) for h in history]
    assert all("duration_ms" in item for item in items)


def test_a_preview_reads_the_whole_table_and_keeps_nothing(store, tenant, wh):
    wh.append(6, T0)
    raw = binding(column="loaded_at")
    [result] = profile_table(
        [BoundEntity(KEY, Binding.model_validate(raw))],
        engine_for=lambda _source: warehouse.create_engine(wh.url),
    )
    assert result.mode == "full" and "preview" in result.full_reason
    with UnitOfWork(store) as uow:
        assert uow.profile_states.get(tenant, "wh", None, "events") is None


def test_an_incremental_column_gone_from_the_table_fails_naming_the_field(
    sqlite_url, store, tenant, wh, monkeypatch
):
    wh.append(3, T0)
    approve_metadata(store, tenant, key=KEY, binding=binding(column="loaded_at"))
    with wh.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE events RENAME COLUMN loaded_at TO arrived_at")
    outcome = run_profiles(
        UnitOfWork(store), settings_for(wh), tenant, [ProfileTarget(KEY)], run_id="r"
    )
    assert "binding.incremental.column" in outcome.failed[KEY]
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", wh.url)
    steward = ["--user", "c", "--role", "metadata_steward"]
    preview = run_cli(["profiles", "preview", KEY, "--tenant", str(tenant), *steward])
    assert preview.exit_code == 2
    assert "binding.incremental.column: column loaded_at not found" in preview.stderr


def test_a_state_is_kept_only_if_no_other_pass_kept_one_since(engine, uow, tenant, wh):
    wh.append(4, T0)
    approve_metadata(engine, tenant, key=KEY, binding=binding(column="loaded_at"))
    run(engine, tenant, wh)
    with uow:
        state, version = uow.profile_states.get(tenant, "wh", None, "events")
    now = dt.datetime.now(dt.UTC)
    with uow:
        assert uow.profile_states.put(tenant, "wh", None, "events", state, version, now)
        assert not uow.profile_states.put(tenant, "wh", None, "events", state, version, now)
        assert not uow.profile_states.put(tenant, "wh", None, "events", state, None, now)
        uow.commit()
    with uow:
        assert uow.profile_states.get(tenant, "wh", None, "events")[1] == version + 1
    assert json.loads(json.dumps(state.to_json())) == state.to_json()
    assert Tier.TIER1  # the profiles above were judged at tier1


def test_days_are_recorded_by_the_first_full_profile_and_then_by_each_pass(
    store_url, engine, tenant, wh, monkeypatch
):
    for day in range(3):  # 2024-03-01 .. 03, six rows a day from 08:00
        wh.append(6, T0 + dt.timedelta(days=day))
    approve_metadata(engine, tenant, key=KEY, binding=binding(column="loaded_at", partition="day"))
    run(engine, tenant, wh)
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    common = ["--tenant", str(tenant), "--user", "c"]
    days = run_cli(["profiles", "days", KEY, *common, "--json"]).json
    assert [(d["day"], d["row_count"]) for d in days] == [
        ("2024-03-01", 6),
        ("2024-03-02", 6),
        ("2024-03-03", 6),
    ]
    first = days[0]
    assert set(first) == {"day", "row_count", "quality_score", "columns"}
    assert set(first["columns"]) == {"id", "email", "amount", "code"}
    email = first["columns"]["email"]
    assert (email["non_null"], email["valid"]) == (6, 4)  # every third email is "bad"
    assert first["columns"]["id"]["distinct"] == 6
    # The day's score by the one formula, as if the table held that day alone.
    [alone] = _only_day(wh, "2024-03-01")
    assert first["quality_score"] == alone.quality_score

    wh.append(2, T0 + dt.timedelta(days=2, hours=5))  # the last day grows
    wh.append(3, T0 + dt.timedelta(days=3))  # and a new one starts
    result = run(engine, tenant, wh)
    assert result.mode == "incremental"
    days = run_cli(["profiles", "days", KEY, *common, "--json"]).json
    assert [(d["day"], d["row_count"]) for d in days] == [
        ("2024-03-01", 6),
        ("2024-03-02", 6),
        ("2024-03-03", 8),
        ("2024-03-04", 3),
    ]
    bounded = run_cli(
        ["profiles", "days", KEY, "--from", "2024-03-02", "--to", "2024-03-03", *common, "--json"]
    ).json
    assert [d["day"] for d in bounded] == ["2024-03-02", "2024-03-03"]
    human = run_cli(["profiles", "days", KEY, "--from", "2024-03-04", *common])
    assert human.exit_code == 0 and "2024-03-04" in human.stdout and "EMAIL.VALID" in human.stdout
    bad = run_cli(["profiles", "days", KEY, "--from", "March", *common])
    assert bad.exit_code == 2 and "from" in bad.stderr
    reversed_ = run_cli(
        ["profiles", "days", KEY, "--from", "2024-03-04", "--to", "2024-03-01", *common]
    )
    assert reversed_.exit_code == 2
    assert run_cli(["profiles", "days", "no.such.key", *common]).exit_code == 4
    other = run_cli(["profiles", "days", KEY, "--tenant", str(uuid.uuid4()), "--user", "c"])
    assert other.exit_code == 4


def test_a_full_profile_drops_days_the_table_no_longer_holds(engine, uow, tenant, wh):
    for day in range(2):
        wh.append(3, T0 + dt.timedelta(days=day))
    approve_metadata(engine, tenant, key=KEY, binding=binding(column="loaded_at", partition="day"))
    run(engine, tenant, wh)
    wh.run("DELETE FROM events WHERE loaded_at < :day", day=T0 + dt.timedelta(hours=12))
    assert run(engine, tenant, wh).mode == "full"
    with uow:
        assert [d.day.isoformat() for d in uow.profile_days.list(tenant, KEY)] == ["2024-03-02"]


def _only_day(wh: Warehouse, day: str) -> list:
    """The profile of a table holding one day of `events` alone."""
    wh.create(table="one_day")
    start = dt.datetime.fromisoformat(day)
    with wh.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO one_day SELECT * FROM events "
                "WHERE loaded_at >= :start AND loaded_at < :end"
            ),
            {"start": start, "end": start + dt.timedelta(days=1)},
        )
    return profile_table(
        [BoundEntity(KEY, Binding.model_validate({**binding(), "table": "one_day"}))],
        engine_for=lambda _source: warehouse.create_engine(wh.url),
    )


def test_a_rewritten_table_is_profiled_in_full(store, tenant, wh):
    """TRUNCATE and a reload of as many rows: the count below the watermark holds, but
    PostgreSQL gave the table a new file (elsewhere the checksum of the rows tells)."""
    wh.append(6, T0)
    approve_metadata(store, tenant, key=KEY, binding=binding(column="loaded_at"))
    run(store, tenant, wh)
    wh.run("DELETE FROM events" if not wh.postgres else "TRUNCATE events")
    wh.next_id = 100
    wh.append(6, T0)
    result = run(store, tenant, wh)
    assert result.mode == "full"
    assert ("rewritten" if wh.postgres else "checksum") in result.full_reason
