"""Exactness, as a property: whatever happens to a table between passes (appends, rows at the
watermark, deletes, updates, late rows), the profile of an incremental pass equals a fresh full
profile of the same table at the same moment, count for count and to the last digit of the
score, and its days equal the full profile's days; and when a change broke the assumption
(it touched rows below the watermark), the pass was full and said why.

Each example builds a table in a SQLite or PostgreSQL warehouse, profiles it with a real run
(`run_profiles`, state kept in the store), then applies random changes, profiling after each:
tenant A incrementally as a schedule would, tenant B in full (`--full`) as the reference."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdstudio_core.adapters import warehouse
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Binding
from mdstudio_core.service_layer.profiling import (
    BoundEntity,
    ProfileTarget,
    profile_table,
    run_profiles,
)
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import approve_metadata, measured

KEY = "sales.events.amount"
T0 = dt.datetime(2024, 3, 1, 22)  # near midnight: batches cross days
COLUMNS = [
    {"name": "id", "unique": True, "min": 1},
    {"name": "email", "pattern": "^[a-z]+@x[.]com$"},
    {"name": "amount", "min": 0, "max": 100},
    {"name": "code", "nullable": True, "allowed_values": ["a", "b"]},
]
BOUND = ("id", "email", "amount", "code", "loaded_at")

values = st.fixed_dictionaries(
    {
        "id": st.integers(1, 12) | st.none(),
        "email": st.sampled_from(["ann@x.com", "bob@x.com", "bad", None]),
        "amount": st.sampled_from([-5, 0, 10.5, 99.99, 150, None]),
        "code": st.sampled_from(["a", "b", "z", None]),
    }
)
appends = st.tuples(
    st.just("append"),
    st.lists(values, min_size=1, max_size=6),
    st.sampled_from([0, 1, 90, 600]),  # minutes after the newest row (0: at the watermark)
    st.sampled_from([0, 1, 45]),  # minutes between the rows of the batch
)
deletes = st.tuples(st.just("delete"), st.integers(0, 10_000))
updates = st.tuples(
    st.just("update"),
    st.integers(0, 10_000),
    st.sampled_from(["email", "amount", "code", "id", "loaded_at"]),
    st.integers(0, 3),
)
late = st.tuples(st.just("late"), values, st.sampled_from([None, 1, 30, 2000]))


@dataclass
class Table:
    """The warehouse table and a model of it: which rows the last pass settled."""

    engine: sa.Engine
    name: str
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_rid: int = 1
    watermark: dt.datetime | None = None  # of the last pass
    settled: set[int] = field(default_factory=set)

    @property
    def newest(self) -> dt.datetime | None:
        stamps = [r["loaded_at"] for r in self.rows.values() if r["loaded_at"] is not None]
        return max(stamps, default=None)

    def execute(self, sql: str, params: list[dict[str, Any]] | dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.text(sql.replace("{t}", self.name)), params)
            if self.engine.dialect.name == "postgresql":
                connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")

    def insert(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        for row in rows:
            row["rid"] = self.next_rid
            self.rows[self.next_rid] = row
            self.next_rid += 1
        self.execute(
            "INSERT INTO {t} (rid, id, loaded_at, email, amount, code) "
            "VALUES (:rid, :id, :loaded_at, :email, :amount, :code)",
            rows,
        )

    def pick(self, index: int) -> dict[str, Any] | None:
        if not self.rows:
            return None
        return self.rows[sorted(self.rows)[index % len(self.rows)]]

    def apply(self, operation: tuple) -> bool:
        """Apply one change; True when it touched the rows the last pass settled."""
        kind = operation[0]
        if kind == "append":
            _, batch, gap, step = operation
            start = (self.newest or T0) + dt.timedelta(minutes=gap)
            rows = [
                {**row, "loaded_at": start + dt.timedelta(minutes=step * i)}
                for i, row in enumerate(batch)
            ]
            self.insert(rows)
            return False
        if kind == "late":
            _, row, back = operation
            base = self.watermark or self.newest or T0
            at = None if back is None else base - dt.timedelta(minutes=back)
            self.insert([{**row, "loaded_at": at}])
            return self.watermark is not None and (at is None or at < self.watermark)
        target = self.pick(operation[1])
        if target is None:
            return False
        rid, was_settled = target["rid"], target["rid"] in self.settled
        if kind == "delete":
            self.execute("DELETE FROM {t} WHERE rid = :rid", {"rid": rid})
            del self.rows[rid]
            return was_settled
        _, _, column, choice = operation
        new = {
            "email": ["ann@x.com", "bad", None, "bob@x.com"],
            "amount": [1, 150, None, 99.99],
            "code": ["a", "z", None, "b"],
            "id": [1, 5, None, 12],
            "loaded_at": [T0 - dt.timedelta(days=1), T0, None, T0 + dt.timedelta(days=3)],
        }[column][choice]
        old = target[column]
        self.execute(f"UPDATE {{t}} SET {column} = :v WHERE rid = :rid", {"v": new, "rid": rid})
        target[column] = new
        changed = _differs(old, new)
        moved_below = (
            column == "loaded_at"
            and self.watermark is not None
            and (new is None or new < self.watermark)
        )
        return changed and (was_settled or moved_below)

    def passed(self) -> None:
        """A pass ran: the rows below the new watermark (or without a value) are settled."""
        self.watermark = self.newest
        self.settled = {
            rid
            for rid, row in self.rows.items()
            if row["loaded_at"] is None or (self.watermark and row["loaded_at"] < self.watermark)
        }


def _differs(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return (old is None) != (new is None)
    return float(old) != float(new) if isinstance(old, int | float) else old != new


def create(engine: sa.Engine, name: str, index_id: bool, index_loaded: bool) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(
            f"CREATE TABLE {name} (rid integer, id integer, loaded_at timestamp, "
            "email varchar(40), amount numeric(10, 2), code varchar(4))"
        )
        if index_id:
            connection.exec_driver_sql(f"CREATE INDEX {name}_id ON {name} (id)")
        if index_loaded:
            connection.exec_driver_sql(f"CREATE INDEX {name}_at ON {name} (loaded_at)")


def scored(result) -> tuple:
    """What a profile of a table bound without binding.incremental gives alike (it also
    counts distinct values of the columns not declared unique)."""
    return (
        result.row_count,
        result.quality_score,
        [(c.name, c.non_null, c.valid, c.min, c.max, c.score) for c in result.columns],
    )


def days(store: sa.Engine, tenant: uuid.UUID) -> list[dict[str, Any]]:
    with UnitOfWork(store) as uow:
        return [day.as_dict() for day in uow.profile_days.list(tenant, KEY)]


@pytest.fixture
def store(sqlite_template, tmp_path):
    """The metadata store (its own behaviour is tested on both backends elsewhere)."""
    path = tmp_path / "store.db"
    shutil.copy(sqlite_template, path)
    engine = create_store_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def check_exactness(store, warehouse_url, data) -> None:
    name = f"t_{uuid.uuid4().hex[:10]}"
    source = sa.create_engine(warehouse_url)
    partition = data.draw(st.sampled_from([None, "day"]), label="partition")
    create(source, name, data.draw(st.booleans(), "index id"), data.draw(st.booleans(), "index"))
    incremental = {"column": "loaded_at", **({"partition": partition} if partition else {})}
    raw = {"source": "wh", "table": name, "columns": COLUMNS, "incremental": incremental}
    scheduled, reference = uuid.uuid4(), uuid.uuid4()
    for tenant in (scheduled, reference):
        approve_metadata(store, tenant, key=KEY, binding=raw)
    table = Table(source, name)
    config = Settings.from_env({"MDSTUDIO_SOURCE_WH_URL": warehouse_url})
    engine = warehouse.create_engine(warehouse_url)

    def profile(tenant: uuid.UUID, full: bool):
        outcome = run_profiles(
            UnitOfWork(store),
            config,
            tenant,
            [ProfileTarget(KEY, full=full)],
            run_id=uuid.uuid4().hex,
            engine_for=lambda _source: engine,
        )
        assert outcome.failed == {}, outcome.failed
        return outcome.profiles[0].result

    table.insert(
        [
            {**row, "loaded_at": T0 + dt.timedelta(minutes=30 * i)}
            for i, row in enumerate(data.draw(st.lists(values, max_size=8), label="rows"))
        ]
    )
    profile(scheduled, False)
    table.passed()
    operations = data.draw(
        st.lists(st.one_of(appends, appends, deletes, updates, late), min_size=1, max_size=5),
        label="changes",
    )
    try:
        for operation in operations:
            broke = table.apply(operation)
            result = profile(scheduled, False)
            full = profile(reference, True)
            assert measured(result) == measured(full), operation
            [legacy] = profile_table(
                [BoundEntity(KEY, Binding.model_validate({**raw, "incremental": None}))],
                engine_for=lambda _source: engine,
            )
            assert scored(result) == scored(legacy), operation
            if broke:
                assert result.mode == "full" and result.full_reason, operation
            if partition:
                assert days(store, scheduled) == days(store, reference), operation
            table.passed()
    finally:
        engine.dispose()
        with source.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE {name}")
        source.dispose()


PROPERTY = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(data=st.data())
def test_incremental_equals_full_on_sqlite(store, tmp_path, data):
    check_exactness(store, f"sqlite:///{tmp_path / 'warehouse.db'}", data)


@pytest.mark.postgres
@settings(PROPERTY, max_examples=10)
@given(data=st.data())
def test_incremental_equals_full_on_postgresql(store, postgres_server, data):
    url = _pg_database(postgres_server)
    check_exactness(store, url, data)


_PG: dict[str, str] = {}


def _pg_database(server) -> str:
    """One warehouse database for the PostgreSQL examples (each example its own table)."""
    if "url" not in _PG:
        _PG["url"] = server.create_database("mdstudio_exact")
    return _PG["url"]


def test_a_day_left_empty_by_an_update_is_dropped_from_the_days(store, tmp_path):
    """A row at the watermark moved to a later day: the incremental pass reads its old day
    whole and finds it empty, so the stored days lose it, as a full profile's do."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    source = sa.create_engine(url)
    create(source, "moved", index_id=False, index_loaded=False)
    raw = {
        "source": "wh",
        "table": "moved",
        "columns": COLUMNS,
        "incremental": {"column": "loaded_at", "partition": "day"},
    }
    scheduled, reference = uuid.uuid4(), uuid.uuid4()
    for tenant in (scheduled, reference):
        approve_metadata(store, tenant, key=KEY, binding=raw)
    config = Settings.from_env({"MDSTUDIO_SOURCE_WH_URL": url})
    engine = warehouse.create_engine(url)

    def profile(tenant: uuid.UUID, full: bool):
        outcome = run_profiles(
            UnitOfWork(store),
            config,
            tenant,
            [ProfileTarget(KEY, full=full)],
            run_id=uuid.uuid4().hex,
            engine_for=lambda _source: engine,
        )
        return outcome.profiles[0].result

    table = Table(source, "moved")
    table.insert([{"id": 1, "email": "ann@x.com", "amount": 1, "code": "a", "loaded_at": T0}])
    profile(scheduled, False)
    assert [d["day"] for d in days(store, scheduled)] == [T0.date().isoformat()]
    table.apply(("update", 0, "loaded_at", 3))  # to T0 + 3 days
    assert profile(scheduled, False).mode == "incremental"
    profile(reference, True)
    moved = (T0 + dt.timedelta(days=3)).date()
    assert [d["day"] for d in days(store, scheduled)] == [moved.isoformat()]
    assert days(store, scheduled) == days(store, reference)
    engine.dispose()
    source.dispose()
