"""A column rule the profiler could not run as written is 422 naming its field, and nothing is
written: a pattern outside the accepted language, a zoned date-time bound beside a naive one."""

from __future__ import annotations

import uuid

import pytest

from tests.http.conftest import is_problem
from tests.support.factories import metadata_request, store_snapshot


@pytest.mark.parametrize(
    ("column", "field", "says"),
    [
        (
            {"name": "code", "pattern": r"^(\w+)\1$"},
            "payload.binding.columns[1].pattern",
            "backreferences",
        ),
        (
            {"name": "code", "pattern": "(?P<name>a)"},
            "payload.binding.columns[1].pattern",
            "(?P at position 0 is not accepted",
        ),
        (
            {"name": "at", "min": "2024-01-01T10:00:00+02:00", "max": "2024-01-02T10:00:00"},
            "payload.binding.columns[1].max",
            "min is a date-time with a time zone and max is a date-time without a time zone",
        ),
        (
            {"name": "at", "min": "2024-01-01T10:00:00", "max": "2024-01-02T10:00:00+00:00"},
            "payload.binding.columns[1].max",
            "with a time zone on both or on neither",
        ),
    ],
)
def test_rule_is_422_naming_the_field(client, bearer, engine, column, field, says):
    alice = bearer(uuid.uuid4(), "alice")
    before = store_snapshot(engine)
    binding = {"table": "orders", "columns": [{"name": "id"}, column]}
    response = client.post("/approvals", json=metadata_request(binding=binding), headers=alice)
    assert is_problem(response, 422, field), response.text
    assert says in response.json()["detail"]
    assert store_snapshot(engine) == before
