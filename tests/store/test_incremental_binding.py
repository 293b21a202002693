"""`binding.incremental`: what a binding declares about how its table grows, validated like every
other binding field (exit 2 / 422 naming `payload.binding.incremental.*`, nothing written), checked
against the warehouse when the source can tell, and a structural change when it changes."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mdstudio_core.adapters import warehouse
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.domain.approvals import validate_request
from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.http.conftest import is_problem
from tests.support.cli_helpers import run_cli
from tests.support.factories import event_types, metadata_request, person, store_snapshot

ACME = uuid.UUID(int=7)
KEY = "sales.orders.amount"


def binding(incremental: object, table: str = "orders") -> dict:
    return {
        "source": "wh",
        "table": table,
        "columns": [{"name": "amount", "min": 0}],
        "incremental": incremental,
    }


def build_orders(url: str) -> None:
    """A warehouse table with a column of every kind an incremental column could be."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE IF EXISTS orders")
        connection.exec_driver_sql(
            "CREATE TABLE orders (id integer, amount numeric(10, 2), loaded_at timestamp, "
            "load_day date, paid boolean, label varchar(20))"
        )
    engine.dispose()


@pytest.mark.parametrize(
    ("incremental", "field"),
    [
        ({"column": "loaded_at"}, None),
        ({"column": "loaded_at", "partition": "day"}, None),
        ({"column": "loaded_at", "partition": "week"}, "payload.binding.incremental.partition"),
        ({"column": "loaded at"}, "payload.binding.incremental.column"),
        ({}, "payload.binding.incremental.column"),
        ({"column": "loaded_at", "every": "day"}, "payload.binding.incremental.every"),
        ("loaded_at", "payload.binding.incremental"),
    ],
)
def test_the_declaration_is_validated_before_the_store(incremental, field):
    request = metadata_request(key=KEY, binding=binding(incremental))
    if field is None:
        _, state = validate_request(request)
        assert state["binding"]["incremental"] == incremental
        return
    with pytest.raises(InvalidInput) as caught:
        validate_request(request)
    assert caught.value.field == field


def test_a_binding_without_it_keeps_its_json():
    request = metadata_request(key=KEY)
    _, state = validate_request(request)
    assert "incremental" not in state["binding"]


@pytest.mark.parametrize(
    ("incremental", "field", "says"),
    [
        ({"column": "nope"}, "payload.binding.incremental.column", "nope not found in table"),
        ({"column": "paid"}, "payload.binding.incremental.column", "must be a number, a date"),
        ({"column": "label"}, "payload.binding.incremental.column", "must be a number, a date"),
        ({"column": "id", "partition": "day"}, "payload.binding.incremental.partition", "date"),
    ],
)
def test_cli_and_http_refuse_a_column_that_cannot_order_the_rows(
    sqlite_url, warehouse_url, monkeypatch, incremental, field, says
):
    """Refused before the store is read (its backend does not matter here)."""
    build_orders(warehouse_url)
    engine = create_store_engine(sqlite_url)
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", warehouse_url)
    before = store_snapshot(engine)
    request = metadata_request(key=KEY, binding=binding(incremental))
    result = run_cli(
        ["approvals", "submit", "--file", "-", "--tenant", str(ACME), "--user", "a"],
        json.dumps(request),
    )
    assert result.exit_code == 2, result.stderr
    assert field in result.stderr and says in result.stderr
    assert store_snapshot(engine) == before
    secret, _ = tokens.create_token(UnitOfWork(engine), person(ACME, "alice"))
    before = store_snapshot(engine)
    with TestClient(create_app(engine=engine)) as client:
        response = client.post(
            "/approvals", json=request, headers={"Authorization": f"Bearer {secret}"}
        )
    assert is_problem(response, 422, field), response.text
    assert says in response.json()["detail"]
    assert store_snapshot(engine) == before
    engine.dispose()


@pytest.mark.parametrize(
    "incremental",
    [{"column": "loaded_at"}, {"column": "id"}, {"column": "LOAD_DAY", "partition": "day"}],
)
def test_a_column_that_orders_the_rows_is_accepted(
    sqlite_url, warehouse_url, monkeypatch, incremental
):
    build_orders(warehouse_url)
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", warehouse_url)
    result = run_cli(
        ["approvals", "submit", "--file", "-", "--tenant", str(ACME), "--user", "a", "--json"],
        json.dumps(metadata_request(key=KEY, binding=binding(incremental))),
    )
    assert result.exit_code == 0, result.stderr
    assert result.json["payload"]["binding"]["incremental"] == incremental


def test_a_source_that_cannot_tell_now_leaves_the_check_to_profiling(store_url, monkeypatch):
    """Not configured here, or its table not created yet: the submission is recorded; the
    profile refuses the column (tests/store/test_incremental_profiles.py)."""
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    for variables in ({}, {"MDSTUDIO_SOURCE_WH_URL": "sqlite://"}):
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        result = run_cli(
            ["approvals", "submit", "--file", "-", "--tenant", str(ACME), "--user", "a"],
            json.dumps(metadata_request(key=KEY, binding=binding({"column": "nope"}))),
        )
        assert result.exit_code == 0, result.stderr
    warehouse.dispose_engines()


def test_changing_it_is_a_structural_change(sqlite_url, warehouse_url, monkeypatch):
    build_orders(warehouse_url)
    engine = create_store_engine(sqlite_url)
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("MDSTUDIO_SOURCE_WH_URL", warehouse_url)
    common = ["--tenant", str(ACME), "--json"]
    for incremental in ({"column": "loaded_at"}, {"column": "id"}):
        submitted = run_cli(
            ["approvals", "submit", "--file", "-", "--user", "a", *common],
            json.dumps(metadata_request(key=KEY, binding=binding(incremental))),
        )
        approval = submitted.json["id"]
        approved = run_cli(
            ["approvals", "approve", approval, "--user", "b", "--role", "kernel_owner", *common]
        )
        assert approved.exit_code == 0, approved.stderr
        assert "metadata.profile.due" in event_types(engine, uuid.UUID(approval))
    engine.dispose()


@pytest.fixture
def sqlite_url(sqlite_template, tmp_path) -> str:
    """A SQLite store of its own: what is tested here happens before the store is read."""
    path = tmp_path / "store.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"
