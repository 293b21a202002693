"""`Idempotency-Key` on `POST /approvals` and the decision routes, over HTTP, on SQLite and
PostgreSQL: a retry gets the first status and body and nothing is done again; the same key with
another body is 422 naming the header; two requests with one key at once: exactly one does the
work, the other waits for it and gets its answer."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from tests.http.conftest import is_problem
from tests.support.factories import KERNEL_OWNER, event_types, metadata_request, store_snapshot


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def test_a_retried_submit_gets_the_first_201_and_location(client, bearer, tenant, engine):
    alice = keyed(bearer(tenant, "alice"), "submit-1")
    first = client.post("/approvals", json=metadata_request(), headers=alice)
    again = client.post("/approvals", json=metadata_request(), headers=alice)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    listed = client.get("/approvals", headers=bearer(tenant, "carol")).json()["items"]
    assert [item["id"] for item in listed] == [first.json()["id"]]


def test_the_same_key_with_another_body_is_422_and_writes_nothing(client, bearer, tenant, engine):
    alice = keyed(bearer(tenant, "alice"), "submit-1")
    client.post("/approvals", json=metadata_request(), headers=alice)
    before = store_snapshot(engine)
    other = client.post("/approvals", json=metadata_request(label="Other"), headers=alice)
    assert is_problem(other, 422, field="Idempotency-Key")
    assert store_snapshot(engine) == before


def test_a_retried_approve_answers_200_again_and_applies_once(client, bearer, tenant, engine):
    submitted = client.post("/approvals", json=metadata_request(), headers=bearer(tenant, "alice"))
    approval = submitted.json()["id"]
    bob = keyed(bearer(tenant, "bob", KERNEL_OWNER), "approve-1")
    first = client.post(f"/approvals/{approval}/approve", json={"reason": "ok"}, headers=bob)
    again = client.post(f"/approvals/{approval}/approve", json={"reason": "ok"}, headers=bob)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert first.json()["status"] == "approved"
    assert event_types(engine, uuid.UUID(approval)).count("approval.approved") == 1
    # Without a key the same retry is a second decision: 409, as before.
    unkeyed = client.post(
        f"/approvals/{approval}/approve", headers=bearer(tenant, "bob", KERNEL_OWNER)
    )
    assert is_problem(unkeyed, 409)
    # The same key on another route is another request.
    other_route = client.post(f"/approvals/{approval}/cancel", headers=bob)
    assert is_problem(other_route, 422, field="Idempotency-Key")


@pytest.mark.parametrize(
    ("route", "user", "roles", "body"),
    [
        ("reject", "bob", (KERNEL_OWNER,), {"reason": "not now"}),
        ("cancel", "alice", (), None),
    ],
)
def test_retried_reject_and_cancel(client, bearer, tenant, engine, route, user, roles, body):
    submitted = client.post("/approvals", json=metadata_request(), headers=bearer(tenant, "alice"))
    approval = submitted.json()["id"]
    headers = keyed(bearer(tenant, user, *roles), f"{route}-1")
    first = client.post(f"/approvals/{approval}/{route}", json=body, headers=headers)
    again = client.post(f"/approvals/{approval}/{route}", json=body, headers=headers)
    assert first.status_code == again.status_code == 200, first.text
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    decided = {"reject": "approval.rejected", "cancel": "approval.cancelled"}[route]
    assert event_types(engine, uuid.UUID(approval)).count(decided) == 1


def test_a_refused_decision_is_not_remembered(client, bearer, tenant):
    submitted = client.post("/approvals", json=metadata_request(), headers=bearer(tenant, "alice"))
    approval = submitted.json()["id"]
    steward = keyed(bearer(tenant, "bob", "metadata_steward"), "approve-1")
    assert is_problem(client.post(f"/approvals/{approval}/approve", headers=steward), 403)
    assert is_problem(client.post(f"/approvals/{approval}/approve", headers=steward), 403)


def test_keys_are_per_tenant(client, bearer, tenant):
    other = uuid.uuid4()
    mine = client.post(
        "/approvals", json=metadata_request(), headers=keyed(bearer(tenant, "alice"), "k")
    )
    theirs = client.post(
        "/approvals", json=metadata_request(), headers=keyed(bearer(other, "alice"), "k")
    )
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert "idempotent-replayed" not in theirs.headers


@pytest.mark.parametrize("key", ["", "two words", "x" * 256])
def test_a_malformed_key_is_422_naming_the_header(client, bearer, tenant, engine, key):
    alice = keyed(bearer(tenant, "alice"), key)
    before = store_snapshot(engine)
    response = client.post("/approvals", json=metadata_request(), headers=alice)
    assert is_problem(response, 422, field="Idempotency-Key")
    assert store_snapshot(engine) == before


def test_the_key_is_documented_on_the_routes_that_take_it(client):
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("", "/{approval_id}/approve", "/{approval_id}/reject", "/{approval_id}/cancel"):
        parameters = paths["/approvals" + route]["post"].get("parameters", [])
        assert "Idempotency-Key" in [p["name"] for p in parameters], route


def test_two_requests_with_one_key_at_once_do_the_work_once(client, bearer, tenant, engine):
    """The first request takes the key, then waits on a lock held outside (on PostgreSQL the
    approval's row, on SQLite the write lock); the second arrives with the same key and waits
    for the first. Released, exactly one applies the approval; the other answers the same."""
    submitted = client.post("/approvals", json=metadata_request(), headers=bearer(tenant, "alice"))
    approval = submitted.json()["id"]
    bob = keyed(bearer(tenant, "bob", KERNEL_OWNER), "approve-at-once")
    responses = {}

    def approve(name: str) -> None:
        responses[name] = client.post(f"/approvals/{approval}/approve", headers=bob)

    postgres = engine.dialect.name == "postgresql"
    blocker = engine.connect()
    transaction = blocker.begin()
    if postgres:
        blocker.execute(
            sa.select(tables.approvals.c.id)
            .where(tables.approvals.c.id == uuid.UUID(approval))
            .with_for_update()
        )
    threads = [threading.Thread(target=approve, args=(name,)) for name in ("first", "second")]
    threads[0].start()
    if postgres:
        _wait_for_waiting(engine, 1)  # the first holds the key and waits on the row
    threads[1].start()
    if postgres:
        _wait_for_waiting(engine, 2)  # the second waits on the first's key
    else:
        time.sleep(0.5)  # both wait for the write lock
    transaction.rollback()
    blocker.close()
    for thread in threads:
        thread.join(30)
    first, second = responses["first"], responses["second"]
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.content == second.content
    replayed = sorted(r.headers.get("idempotent-replayed", "no") for r in (first, second))
    assert replayed == ["no", "true"]
    if postgres:
        assert "idempotent-replayed" not in first.headers  # the one that took the key first
    assert event_types(engine, uuid.UUID(approval)).count("approval.approved") == 1


def _wait_for_waiting(engine, count: int) -> None:
    """Until `count` sessions of this database wait on a lock."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    with engine.connect() as connection:
        while connection.execute(query).scalar_one() < count:
            assert time.monotonic() < deadline, f"{count} sessions never waited on a lock"
            time.sleep(0.05)
            connection.rollback()
