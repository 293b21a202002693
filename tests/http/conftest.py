"""An API client over the `engine` fixture (SQLite and PostgreSQL) and tokens to call it with."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import person

Headers = dict[str, str]


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine=engine)) as test_client:
        yield test_client


@pytest.fixture
def bearer(engine: Engine) -> Callable[..., Headers]:
    """`bearer(tenant, user, *roles)`: headers carrying a fresh token for that identity."""

    def make(
        tenant: uuid.UUID, user: str, *roles: str, expires_in: dt.timedelta | None = None
    ) -> Headers:
        secret, _record = tokens.create_token(
            UnitOfWork(engine), person(tenant, user, *roles), expires_in
        )
        return {"Authorization": f"Bearer {secret}"}

    return make


def is_problem(response, status: int, field: str | None = None) -> bool:
    """The response is an RFC 9457 problem with this status (and naming this field)."""
    body = response.json()
    return (
        response.status_code == status
        and response.headers["content-type"] == "application/problem+json"
        and body["status"] == status
        and {"type", "title", "detail", "instance"} <= set(body)
        and (field is None or body.get("field") == field)
    )
