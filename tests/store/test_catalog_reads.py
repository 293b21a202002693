"""The read side of the catalog (`service_layer.catalog`) at its defaults and bounds: page sizes,
filters, the position limits and what a refused page names. (Surviving mutants of `make
mutation` showed that the defaults and the refusals' fields were never read.)"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from mdstudio_core.domain.errors import InvalidInput, NotFound
from mdstudio_core.domain.model import EntityStatus, EntityType
from mdstudio_core.service_layer import catalog
from mdstudio_core.service_layer.catalog import MAX_POSITION, check_page
from tests.support.factories import DEMO_BINDING, approve_metadata, person, stored_profile

KEY = "finance.revenue.gross_amount"


@pytest.mark.parametrize(
    ("limit", "start", "field", "message"),
    [
        (0, 0, "limit", "must be between 1 and 1000"),
        (1001, 0, "limit", "must be between 1 and 1000"),
        (1, -1, "after", "must not be negative"),
        (1, MAX_POSITION + 1, "after", "is too large"),
    ],
)
def test_a_refused_page_names_its_field(limit, start, field, message):
    with pytest.raises(InvalidInput) as caught:
        check_page(limit, start, "after")
    assert (caught.value.field, caught.value.reason) == (field, message)


def test_the_largest_page_and_position_are_accepted():
    check_page(1000, MAX_POSITION, "offset")
    check_page(1, 0, "offset")


def test_entities_are_listed_a_hundred_at_a_time_by_key(uow, tenant):
    ana = person(tenant, "ana")
    with uow:  # 101 live entities, straight into the store
        for n in reversed(range(101)):  # stored out of key order
            state = {
                "canonical_key": f"finance.f{n:03}",
                "label": "F",
                "description": "d",
                "tier": "tier3",
                "domain": "finance",
                "owner": "o",
                "data_type": "text",
                "status": "deprecated" if n == 7 else "active",
            }
            now = dt.datetime.now(dt.UTC)
            uow.entities.insert(EntityType.GLOBAL_METADATA, tenant, uuid.uuid4(), state, "x", now)
        uow.commit()

    page = catalog.list_entities(uow, ana)
    assert [e.canonical_key for e in page] == [f"finance.f{n:03}" for n in range(100)]
    assert all(e.entity_type is EntityType.GLOBAL_METADATA for e in page)
    rest = catalog.list_entities(uow, ana, limit=1, offset=99)
    assert [e.canonical_key for e in rest] == ["finance.f099"]
    [deprecated] = catalog.list_entities(uow, ana, status=EntityStatus.DEPRECATED)
    assert deprecated.canonical_key == "finance.f007"
    with pytest.raises(InvalidInput) as caught:
        catalog.list_entities(uow, ana, offset=-1)
    assert caught.value.field == "offset"


def test_events_are_paged_a_hundred_at_a_time_after_an_id(engine, uow, tenant):
    ana = person(tenant, "ana")
    for n in range(26):  # four events each
        approve_metadata(engine, tenant, key=f"finance.f{n:02}", binding=DEMO_BINDING)

    page = catalog.list_events(uow, ana)
    assert len(page) == 100
    assert [e.id for e in page] == sorted(e.id for e in page)
    assert all(e.occurred_at is not None and e.tenant_id == tenant for e in page)
    after = catalog.list_events(uow, ana, after=page[9].id, limit=3)
    assert [e.id for e in after] == [e.id for e in page[10:13]]
    with pytest.raises(InvalidInput) as caught:
        catalog.list_events(uow, ana, after=-1)
    assert caught.value.field == "after"


def test_a_profile_history_is_twenty_long_and_needs_the_field(engine, uow, tenant):
    approve_metadata(engine, tenant, key=KEY, binding=DEMO_BINDING)
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with uow:
        for hours in range(21):
            uow.profiles.add(stored_profile(tenant, KEY, t0 + dt.timedelta(hours=hours)))
        uow.commit()
    ana = person(tenant, "ana")
    assert len(catalog.profile_history(uow, ana, KEY)) == 20
    assert len(catalog.profile_history(uow, ana, KEY, limit=3)) == 3
    with pytest.raises(NotFound, match=r"GLOBAL_METADATA finance\.nowhere not found"):
        catalog.profile_history(uow, ana, "finance.nowhere")
    with pytest.raises(InvalidInput) as caught:
        catalog.profile_history(uow, ana, KEY, limit=0)
    assert caught.value.field == "limit"
