"""Races: many approvers on one request, and readers tailing the outbox while writers commit."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.domain.errors import Conflict
from mdstudio_core.domain.events import NewEvent
from mdstudio_core.domain.model import StoreTimeouts
from mdstudio_core.service_layer import approvals, catalog
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import (
    KERNEL_OWNER,
    SETTINGS,
    STEWARD,
    event_types,
    make_event,
    metadata_request,
    person,
)

RACERS = 8


def _race(engine, tenant, approval_id):
    barrier = threading.Barrier(RACERS)

    def attempt(i):
        barrier.wait()
        try:
            approvals.approve(
                UnitOfWork(engine),
                person(tenant, f"approver{i}", KERNEL_OWNER),
                approval_id,
                None,
                SETTINGS,
            )
            return "won"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(RACERS) as pool:
        return sorted(pool.map(attempt, range(RACERS)))


def test_racing_approvers_one_winner_one_set_of_events(engine, tenant):
    for round_ in range(3):
        approval = approvals.submit(
            UnitOfWork(engine),
            person(tenant, "alice"),
            metadata_request(f"finance.race.k{round_}"),
            SETTINGS,
        )
        outcomes = _race(engine, tenant, approval.id)
        assert outcomes == ["conflict"] * (RACERS - 1) + ["won"]
        assert event_types(engine, approval.id) == [
            "metadata.approved",
            "metadata.changed",
            "metadata.profile.due",
            "approval.approved",
        ]


def test_racing_approvals_of_two_requests_for_one_new_entity(engine, tenant):
    """Both requests create the same key: one applies, the other is refused as stale."""
    alice = person(tenant, "alice")
    first = approvals.submit(UnitOfWork(engine), alice, metadata_request(), SETTINGS)
    second = approvals.submit(UnitOfWork(engine), alice, metadata_request(label="Other"), SETTINGS)
    barrier = threading.Barrier(2)

    def attempt(approval_id):
        barrier.wait()
        try:
            approvals.approve(
                UnitOfWork(engine), person(tenant, "bob", KERNEL_OWNER), approval_id, None, SETTINGS
            )
            return "won"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(attempt, [first.id, second.id])) == ["conflict", "won"]
    assert len(event_types(engine)) == 4
    assert (
        catalog.get_entity(UnitOfWork(engine), alice, "finance.revenue.gross_amount").version == 1
    )


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_outbox_readers_never_skip_an_event(engine, tenant):
    """A reader paging by `id > cursor` while writers commit concurrently must see every event:
    ids become visible in increasing order (see EventOutbox.append)."""
    requests = [
        approvals.submit(
            UnitOfWork(engine),
            person(tenant, "alice"),
            metadata_request(f"k.n{i}", tier="tier3"),
            SETTINGS,
        )
        for i in range(60)
    ]
    done = threading.Event()
    seen: list[int] = []

    def tail():
        cursor = 0
        reader = person(tenant, "reader")
        while True:
            finished = done.is_set()
            page = catalog.list_events(UnitOfWork(engine), reader, after=cursor, limit=1000)
            seen.extend(event.id for event in page)
            if page:
                cursor = page[-1].id
            elif finished:
                return

    def approve(approval):
        approvals.approve(
            UnitOfWork(engine), person(tenant, "bob", STEWARD), approval.id, None, SETTINGS
        )

    reader_thread = threading.Thread(target=tail)
    reader_thread.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(approve, requests))
    done.set()
    reader_thread.join()
    every_id = [
        event.id
        for event in catalog.list_events(UnitOfWork(engine), person(tenant, "x"), limit=1000)
    ]
    assert len(every_id) == 3 * len(requests)
    assert seen == every_id


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_an_open_outbox_read_holds_up_no_writer(engine, tenant):
    """A reader holds the outbox lock for an instant, not for its transaction: an approval
    commits while a reader's transaction is still open (a client polling `/events`, a slow
    sensor page), so no token can slow every tenant's approvals by reading."""
    approval = approvals.submit(
        UnitOfWork(engine), person(tenant, "alice"), metadata_request(), SETTINGS
    )
    approver = ThreadPoolExecutor(1)
    with UnitOfWork(engine) as reader:
        reader.events.list(after=0)
        approving = approver.submit(
            approvals.approve,
            UnitOfWork(engine),
            person(tenant, "bob", KERNEL_OWNER),
            approval.id,
            None,
            SETTINGS,
        )
        done, _ = wait([approving], timeout=10)
    approver.shutdown()
    assert done, "the approval waited for the reader's transaction to end"
    assert approving.result().status == "approved"


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_reader_stops_below_a_writer_still_running(engine, tenant):
    """Ids drawn out of commit order, step by step: while the writer of id 1 is still running, a
    reader does not see id 2, committed meanwhile; once 1 commits it sees both, in order. The
    reader waits for no one (were it to wait for the writer, which this thread holds open, its
    lock timeout would fail the test instead of hanging it)."""
    reader = create_store_engine(
        engine.url.render_as_string(hide_password=False), StoreTimeouts(statement_s=5, lock_s=5)
    )

    def event(key: str) -> NewEvent:
        return make_event("metadata.changed", tenant, key, {}, actor="alice")

    def page() -> list[int]:
        return [e.id for e in catalog.list_events(UnitOfWork(reader), person(tenant, "reader"))]

    with UnitOfWork(engine) as slow:
        [first] = slow.events.append([event("k.slow")])
        with UnitOfWork(engine) as fast:
            [second] = fast.events.append([event("k.fast")])
            fast.commit()
        assert first.id < second.id
        assert page() == []
        slow.commit()
    assert page() == [first.id, second.id]
    reader.dispose()
