"""Idempotency keys in the service layer, on SQLite and PostgreSQL: the first request under a key
does the work and stores its answer in the same transaction; a retry gets that answer and the
work is not done again; another request under the key is refused; keys are per tenant and are
forgotten once expired; a request that fails stores nothing."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.idempotency import Answer, keyed_request
from mdstudio_core.service_layer import approvals, idempotency
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import SETTINGS, metadata_request, person, store_snapshot

DAY = dt.timedelta(hours=24)


class Submitter:
    """Work that submits a request, counting how often it ran."""

    def __init__(self, engine, identity):
        self.engine, self.identity, self.runs = engine, identity, 0

    def __call__(self, uow: UnitOfWork, request: dict) -> Answer:
        self.runs += 1
        approval = approvals.submit(uow, self.identity, request, SETTINGS)
        return Answer(201, str(approval.id).encode(), f"/approvals/{approval.id}")

    def once(self, key: str, request: dict, lifetime: dt.timedelta = DAY) -> Answer:
        uow = UnitOfWork(self.engine)
        keyed = keyed_request(key, self.identity.user, "POST", "/approvals", request)
        return idempotency.answer_once(
            uow, self.identity, keyed, lifetime, lambda: self(uow, request)
        )


def approvals_of(engine, tenant) -> list[uuid.UUID]:
    with engine.connect() as connection:
        query = sa.select(tables.approvals.c.id).where(tables.approvals.c.tenant_id == tenant)
        return list(connection.execute(query).scalars())


def test_a_retry_gets_the_first_answer_and_the_work_is_done_once(engine, tenant):
    alice = Submitter(engine, person(tenant, "alice"))
    first = alice.once("k-1", metadata_request())
    again = alice.once("k-1", metadata_request())
    assert (first.status, first.replayed) == (201, False)
    assert again == Answer(first.status, first.body, first.location, replayed=True)
    assert alice.runs == 1
    assert approvals_of(engine, tenant) == [uuid.UUID(first.body.decode())]


def test_the_same_key_for_another_request_is_refused_and_writes_nothing(engine, tenant):
    alice = Submitter(engine, person(tenant, "alice"))
    alice.once("k-1", metadata_request())
    before = store_snapshot(engine)
    with pytest.raises(InvalidInput) as refused:
        alice.once("k-1", metadata_request(label="Another label"))
    assert refused.value.field == "Idempotency-Key"
    assert "another request" in str(refused.value)
    assert store_snapshot(engine) == before
    assert alice.runs == 1


def test_the_same_key_from_another_user_is_another_request(engine, tenant):
    Submitter(engine, person(tenant, "alice")).once("k-1", metadata_request())
    with pytest.raises(InvalidInput):
        Submitter(engine, person(tenant, "mallory")).once("k-1", metadata_request())


def test_keys_are_per_tenant(engine, tenant):
    other = uuid.uuid4()
    mine = Submitter(engine, person(tenant, "alice")).once("k-1", metadata_request())
    theirs = Submitter(engine, person(other, "alice")).once("k-1", metadata_request())
    assert not theirs.replayed
    assert mine.body != theirs.body
    assert len(approvals_of(engine, tenant)) == len(approvals_of(engine, other)) == 1


def test_the_work_and_its_answer_commit_together(engine, uow, tenant):
    """The work's own commit is held: a failure after it (here, right after the submit) rolls
    back the approval and the key alike, and the retry does the work."""
    identity = person(tenant, "alice")
    keyed = keyed_request("k-1", "alice", "POST", "/approvals", None)

    def submit_then_fail() -> Answer:
        approvals.submit(uow, identity, metadata_request(), SETTINGS)  # commits, but held
        raise RuntimeError("the process died before answering")

    with pytest.raises(RuntimeError):
        idempotency.answer_once(uow, identity, keyed, DAY, submit_then_fail)
    assert approvals_of(engine, tenant) == []
    with engine.connect() as connection:
        assert connection.execute(sa.select(tables.idempotency_keys)).all() == []
    alice = Submitter(engine, identity)
    retry = alice.once("k-1", metadata_request())
    assert (retry.replayed, alice.runs) == (False, 1)
    assert approvals_of(engine, tenant) == [uuid.UUID(retry.body.decode())]


def test_a_refused_request_stores_nothing_and_its_retry_is_tried_again(engine, tenant):
    alice = Submitter(engine, person(tenant, "alice"))
    bad = metadata_request(tier="tier9")
    for _ in range(2):
        with pytest.raises(InvalidInput):
            alice.once("k-1", bad)
    assert alice.runs == 2
    assert not alice.once("k-1", metadata_request()).replayed


def test_an_expired_key_is_taken_anew_and_expired_keys_are_purged(engine, tenant):
    alice = Submitter(engine, person(tenant, "alice"))
    alice.once("old", metadata_request(), lifetime=dt.timedelta(0))
    alice.once("k-1", metadata_request(label="Old"), lifetime=dt.timedelta(0))
    renewed = alice.once("k-1", metadata_request(label="New"))  # another body: a new request
    assert not renewed.replayed
    assert alice.runs == 3
    with engine.connect() as connection:
        kept = connection.execute(sa.select(tables.idempotency_keys.c.idempotency_key)).all()
    assert [row.idempotency_key for row in kept] == ["k-1"]  # "old" purged


@pytest.mark.parametrize("key", ["", "has space", "é", "x" * 256])
def test_a_malformed_key_is_refused_naming_the_header(key):
    with pytest.raises(InvalidInput) as refused:
        keyed_request(key, "alice", "POST", "/approvals", None)
    assert refused.value.field == "Idempotency-Key"


def test_the_fingerprint_ignores_key_order_and_tells_bodies_users_and_routes_apart():
    def fingerprint(user="alice", path="/approvals", body=None):
        return keyed_request("k", user, "post", path, body or {"a": 1, "b": [1, 2]}).fingerprint

    reordered = keyed_request("k", "alice", "POST", "/approvals", {"b": [1, 2], "a": 1})
    assert fingerprint() == reordered.fingerprint
    others = [fingerprint(user="bob"), fingerprint(path="/x"), fingerprint(body={"a": 2})]
    assert len({fingerprint(), *others}) == 4
