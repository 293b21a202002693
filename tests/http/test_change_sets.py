"""`POST /change-sets`, `GET /change-sets/{id}`, and a set decided through `/approvals/{id}`;
two-person rules over HTTP; on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import orjson

from mdstudio_core.domain.model import Lane, Tier
from mdstudio_core.service_layer import two_person
from tests.http.conftest import is_problem
from tests.support.factories import (
    KERNEL_OWNER,
    STEWARD,
    changed,
    event_types,
    glossary_request,
    metadata_request,
    person,
    store_snapshot,
)


def body(*requests, title="Q3 import"):
    return {"title": title, "requests": list(requests)}


def test_submit_answers_201_with_id_title_and_items_then_reads_back(client, bearer, tenant):
    alice = bearer(tenant, "alice")
    response = client.post(
        "/change-sets", json=body(metadata_request(), glossary_request()), headers=alice
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"/change-sets/{created['id']}"
    assert created["title"] == "Q3 import"
    assert [item["entity_key"] for item in created["items"]] == [
        "finance.revenue.gross_amount",
        "Gross Revenue",
    ]
    assert created["items"][1]["changes"][0] == {
        "field": "term",
        "change": "added",
        "old": None,
        "new": "Gross Revenue",
    }
    assert (created["entity_type"], created["required_role"], created["status"]) == (
        "CHANGE_SET",
        KERNEL_OWNER,
        "pending",
    )
    reader = bearer(tenant, "carol")
    assert client.get(response.headers["location"], headers=reader).json() == created
    as_request = client.get(f"/approvals/{created['id']}", headers=reader).json()
    assert as_request["items"] == created["items"] and as_request["impact"] == []
    inbox = client.get("/approvals?status=pending", headers=reader).json()["items"]
    assert [row["id"] for row in inbox] == [created["id"]]
    assert client.get(f"/change-sets/{uuid.uuid4()}", headers=reader).status_code == 404
    other_tenant = client.get(response.headers["location"], headers=bearer(uuid.uuid4(), "x"))
    assert is_problem(other_tenant, 404)


def test_invalid_items_are_422_listing_each_and_nothing_is_stored(client, bearer, tenant, engine):
    alice = bearer(tenant, "alice")
    before = store_snapshot(engine)
    bad = changed(metadata_request("sales.a.b", tier="tier2"), tier="tier9")
    response = client.post(
        "/change-sets", json=body(glossary_request(), bad, {"entity_type": "KPI"}), headers=alice
    )
    assert is_problem(response, 422, "requests"), response.text
    problem = response.json()
    assert problem["detail"].startswith("item 2: payload.tier: ")
    assert [(e["item"], e["field"]) for e in problem["errors"]] == [
        ("2", "payload.tier"),
        ("3", "tier"),
    ]
    for bad_body, field in [
        ({"requests": [glossary_request()]}, "title"),
        ({"title": "T"}, "requests"),
        ({"title": "T", "requests": []}, "requests"),
        ({"title": "a, b", "requests": [glossary_request()]}, "title"),
        ({"title": "T", "requests": [glossary_request()], "extra": 1}, "extra"),
        ([glossary_request()], "body"),
    ]:
        refused = client.post("/change-sets", json=bad_body, headers=alice)
        assert is_problem(refused, 422, field), (bad_body, refused.text)
    assert store_snapshot(engine) == before


def test_a_set_is_decided_through_the_approvals_routes(client, bearer, tenant, engine):
    alice = bearer(tenant, "alice")
    created = client.post(
        "/change-sets", json=body(metadata_request(), glossary_request()), headers=alice
    ).json()
    approve = f"/approvals/{created['id']}/approve"
    assert is_problem(client.post(approve, headers=bearer(tenant, "alice", KERNEL_OWNER)), 403)
    assert is_problem(client.post(approve, headers=bearer(tenant, "sam", STEWARD)), 403)
    decided = client.post(
        approve, json={"reason": "ok"}, headers=bearer(tenant, "bob", KERNEL_OWNER)
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    assert event_types(engine, uuid.UUID(created["id"])) == [
        "metadata.approved",
        "metadata.changed",
        "metadata.profile.due",
        "approval.approved",
        "approval.approved",
    ]
    again = client.post(approve, headers=bearer(tenant, "carol", KERNEL_OWNER))
    assert is_problem(again, 409)
    live = client.get("/metadata/finance.revenue.gross_amount", headers=alice).json()
    assert live["version"] == 1


def test_a_stale_item_is_409_naming_it(client, bearer, tenant):
    alice, bob = bearer(tenant, "alice"), bearer(tenant, "bob", STEWARD, KERNEL_OWNER)
    first = client.post("/approvals", json=glossary_request(), headers=alice).json()
    client.post(f"/approvals/{first['id']}/approve", headers=bob)
    created = client.post(
        "/change-sets",
        json=body(
            metadata_request("sales.a.b", tier="tier2"),
            changed(glossary_request(), definition="Sharper."),
        ),
        headers=alice,
    ).json()
    moved = client.post(
        "/approvals", json=changed(glossary_request(), definition="Moved on."), headers=alice
    ).json()
    client.post(f"/approvals/{moved['id']}/approve", headers=bob)
    stale = client.post(f"/approvals/{created['id']}/approve", headers=bob)
    assert is_problem(stale, 409)
    assert stale.json()["detail"].startswith("item 2: stale request: GLOSSARY Gross Revenue")
    shown = client.get(f"/change-sets/{created['id']}", headers=bob).json()
    assert [item["stale"] for item in shown["items"]] == [False, True]
    assert client.get("/metadata/sales.a.b", headers=bob).status_code == 404
    rejected = client.post(
        f"/approvals/{created['id']}/reject", json={"reason": "stale"}, headers=bob
    )
    assert rejected.json()["status"] == "rejected"


def test_endorsements_over_http(client, bearer, tenant, uow):
    admin = person(tenant, "root", "tenant_admin")
    two_person.set_policy(uow, admin, Lane.KERNEL, Tier.TIER1, KERNEL_OWNER, 2)
    created = client.post(
        "/approvals", json=metadata_request(), headers=bearer(tenant, "alice")
    ).json()
    assert created["required_approvals"] == 2 and created["endorsements"] == []
    approve = f"/approvals/{created['id']}/approve"
    bob = bearer(tenant, "bob", KERNEL_OWNER)
    endorsed = client.post(approve, json={"reason": "checked"}, headers=bob)
    assert endorsed.status_code == 200
    assert endorsed.json()["status"] == "pending"
    [endorsement] = endorsed.json()["endorsements"]
    assert (endorsement["user"], endorsement["reason"]) == ("bob", "checked")
    twice = client.post(approve, headers=bob)
    assert is_problem(twice, 409) and "already endorsed" in twice.json()["detail"]
    listed = client.get("/approvals?status=pending", headers=bob).json()["items"]
    assert listed[0]["required_approvals"] == 2
    applied = client.post(approve, headers=bearer(tenant, "carol", KERNEL_OWNER))
    assert applied.json()["status"] == "approved"
    shown = client.get(f"/approvals/{created['id']}", headers=bob).json()
    assert [e["user"] for e in shown["endorsements"]] == ["bob"]


def test_a_change_set_body_has_its_own_size_bound(engine, bearer, monkeypatch):
    from fastapi.testclient import TestClient

    from mdstudio_core.entrypoints.http import create_app

    monkeypatch.setenv("MDSTUDIO_MAX_BODY_BYTES", "2000")
    monkeypatch.setenv("MDSTUDIO_MAX_CHANGE_SET_BYTES", "60000")
    headers = {**bearer(uuid.uuid4(), "alice"), "content-type": "application/json"}
    requests = [glossary_request(f"Term {n}") for n in range(40)]
    payload = orjson.dumps(body(*requests))
    assert 2000 < len(payload) < 60000
    with TestClient(create_app(engine=engine)) as app:
        assert app.post("/change-sets", content=payload, headers=headers).status_code == 201
        assert is_problem(app.post("/approvals", content=payload, headers=headers), 413, "body")
        bigger = orjson.dumps(body(*(requests * 10)))
        too_big = app.post("/change-sets", content=bigger, headers=headers)
        assert is_problem(too_big, 413, "body")
        assert "60000 bytes" in too_big.json()["detail"]
