"""Every route, its success and its failures, over real HTTP semantics (TestClient)."""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import migrations, tables
from tests.http.conftest import is_problem
from tests.support.factories import (
    KERNEL_OWNER,
    STEWARD,
    event_types,
    glossary_request,
    kpi_request,
    metadata_request,
    store_snapshot,
)

KEY = "finance.revenue.gross_amount"


def _approved(client, requester, approver, request):
    submitted = client.post("/approvals", json=request, headers=requester)
    assert submitted.status_code == 201, submitted.text
    decided = client.post(f"/approvals/{submitted.json()['id']}/approve", headers=approver)
    assert decided.status_code == 200, decided.text
    return decided.json()


def test_submit_returns_201_with_location_and_the_stored_request(client, bearer, tenant):
    response = client.post("/approvals", json=metadata_request(), headers=bearer(tenant, "alice"))
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/approvals/{body['id']}"
    assert body["status"] == "pending"
    assert body["required_role"] == KERNEL_OWNER
    assert body["requested_by"] == "alice"
    assert body["tenant_id"] == str(tenant)
    shown = client.get(response.headers["location"], headers=bearer(tenant, "carol"))
    assert shown.status_code == 200
    assert shown.json() == {**body, "impact": []}  # a new field endangers no KPI


def test_submit_failures_name_the_field_and_write_nothing(client, bearer, tenant, engine):
    alice = bearer(tenant, "alice")
    before = store_snapshot(engine)
    bad_column = metadata_request()
    bad_column["payload"]["binding"]["columns"][0]["name"] = "gross amount"
    cases = [
        (bad_column, 422, "payload.binding.columns[0].name"),
        (metadata_request(tier="tier1", lane="governed"), 422, "lane"),
        ({**metadata_request(), "tier": "tier9"}, 422, "tier"),
        ({**metadata_request(), "surprise": 1}, 422, "surprise"),
        ([1, 2], 422, None),
    ]
    for body, status, field in cases:
        response = client.post("/approvals", json=body, headers=alice)
        assert is_problem(response, status, field), (body, response.text)
    malformed = client.post(
        "/approvals",
        content=b'{"entity_type": ',
        headers={**alice, "content-type": "application/json"},
    )
    assert is_problem(malformed, 400, "body")
    empty = client.post("/approvals", headers=alice)
    assert is_problem(empty, 422, "body")
    assert store_snapshot(engine) == before


def test_body_over_the_limit_is_413_by_declared_length_and_by_streamed_bytes(
    engine, bearer, monkeypatch
):
    from fastapi.testclient import TestClient

    from mdstudio_core.entrypoints.http import create_app

    monkeypatch.setenv("MDSTUDIO_MAX_BODY_BYTES", "1000")  # read as the server reads it
    headers = {**bearer(uuid.uuid4(), "alice"), "content-type": "application/json"}
    with TestClient(create_app(engine=engine)) as small:
        declared = small.post("/approvals", content=b" " * 1001, headers=headers)
        assert is_problem(declared, 413, "body")

        def chunks():  # no Content-Length: chunked transfer
            for _ in range(20):
                yield b" " * 100

        streamed = small.post("/approvals", content=chunks(), headers=headers)
        assert is_problem(streamed, 413, "body")
        fits = small.post("/approvals", content=b"{}", headers=headers)
        assert fits.status_code == 422


def test_approve_applies_once_and_a_second_decision_is_409(client, bearer, tenant, engine):
    approved = _approved(
        client, bearer(tenant, "alice"), bearer(tenant, "bob", KERNEL_OWNER), metadata_request()
    )
    assert approved["status"] == "approved"
    assert approved["decided_by"] == "bob"
    assert event_types(engine, uuid.UUID(approved["id"])) == [
        "metadata.approved",
        "metadata.changed",
        "metadata.profile.due",
        "approval.approved",
    ]
    again = client.post(
        f"/approvals/{approved['id']}/approve", headers=bearer(tenant, "dave", KERNEL_OWNER)
    )
    assert is_problem(again, 409)
    assert "already approved" in again.json()["detail"]


def test_stale_request_is_409_and_overwrites_nothing(client, bearer, tenant, engine):
    alice, bob = bearer(tenant, "alice"), bearer(tenant, "bob", KERNEL_OWNER)
    _approved(client, alice, bob, metadata_request())
    first = client.post("/approvals", json=metadata_request(label="One"), headers=alice).json()
    second = client.post("/approvals", json=metadata_request(label="Two"), headers=alice).json()
    assert client.post(f"/approvals/{first['id']}/approve", headers=bob).status_code == 200
    before = store_snapshot(engine)
    stale = client.post(f"/approvals/{second['id']}/approve", headers=bob)
    assert is_problem(stale, 409)
    assert "stale" in stale.json()["detail"]
    assert store_snapshot(engine) == before


def test_reject_needs_a_reason_and_records_it(client, bearer, tenant, engine):
    alice, bob = bearer(tenant, "alice"), bearer(tenant, "bob", STEWARD)
    pending = client.post("/approvals", json=kpi_request(), headers=alice).json()
    url = f"/approvals/{pending['id']}/reject"
    assert is_problem(client.post(url, headers=bob), 422, "body")
    assert is_problem(client.post(url, json={}, headers=bob), 422, "reason")
    assert is_problem(client.post(url, json={"reason": "   "}, headers=bob), 422, "reason")
    assert is_problem(client.post(url, json={"reason": "a\x00b"}, headers=bob), 422, "reason")
    rejected = client.post(url, json={"reason": "duplicate of margin_pct"}, headers=bob)
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["decision_reason"] == "duplicate of margin_pct"
    assert event_types(engine, uuid.UUID(pending["id"])) == ["approval.rejected"]


def test_cancel_is_the_requesters_with_an_optional_reason(client, bearer, tenant):
    alice = bearer(tenant, "alice", STEWARD)
    first = client.post("/approvals", json=glossary_request(), headers=alice).json()
    second = client.post("/approvals", json=glossary_request("Net Revenue"), headers=alice).json()
    other = client.post(
        f"/approvals/{first['id']}/cancel", headers=bearer(tenant, "bob", STEWARD, KERNEL_OWNER)
    )
    assert is_problem(other, 403)
    plain = client.post(f"/approvals/{first['id']}/cancel", headers=alice)
    assert plain.status_code == 200
    assert plain.json()["status"] == "cancelled"
    noted = client.post(f"/approvals/{second['id']}/cancel", json={"reason": "typo"}, headers=alice)
    assert noted.json()["decision_reason"] == "typo"
    extra = client.post(
        f"/approvals/{second['id']}/cancel", json={"reason": "x", "by": "eve"}, headers=alice
    )
    assert is_problem(extra, 422, "by")


def test_unknown_and_malformed_approval_ids(client, bearer, tenant):
    carol = bearer(tenant, "carol", KERNEL_OWNER)
    missing = uuid.uuid4()
    for method, path in [
        ("get", f"/approvals/{missing}"),
        ("post", f"/approvals/{missing}/approve"),
        ("post", f"/approvals/{missing}/cancel"),
    ]:
        assert is_problem(client.request(method, path, headers=carol), 404), path
    rejected = client.post(f"/approvals/{missing}/reject", json={"reason": "x"}, headers=carol)
    assert is_problem(rejected, 404)
    assert is_problem(client.get("/approvals/not-a-uuid", headers=carol), 422, "approval_id")


def test_inbox_filters_and_pages_newest_first(client, bearer, tenant):
    alice, bob = bearer(tenant, "alice"), bearer(tenant, "bob", STEWARD)
    ids = [
        client.post(
            "/approvals", json=metadata_request(f"sales.f{i}", tier="tier2"), headers=alice
        ).json()["id"]
        for i in range(5)
    ]
    kpi = client.post("/approvals", json=kpi_request(), headers=alice).json()["id"]
    client.post(f"/approvals/{ids[0]}/approve", headers=bob)

    everything = client.get("/approvals", headers=bob).json()
    assert [a["id"] for a in everything["items"]] == [kpi, *reversed(ids)]
    assert everything["next_offset"] is None

    page = client.get("/approvals?limit=2&offset=1", headers=bob).json()
    assert [a["id"] for a in page["items"]] == [ids[4], ids[3]]
    assert (page["limit"], page["offset"], page["next_offset"]) == (2, 1, 3)

    def ids_of(query):
        response = client.get(f"/approvals?{query}", headers=bob)
        assert response.status_code == 200, response.text
        return {a["id"] for a in response.json()["items"]}

    assert ids_of("status=pending") == {kpi, *ids[1:]}
    assert ids_of("status=approved") == {ids[0]}
    assert ids_of("entity_type=KPI") == {kpi}
    assert ids_of("tier=tier2&lane=governed&entity_type=GLOBAL_METADATA") == set(ids)
    assert ids_of("lane=kernel") == set()
    assert ids_of("entity=sales.f3") == {ids[3]}
    assert is_problem(client.get("/approvals?status=maybe", headers=bob), 422, "status")
    assert is_problem(client.get("/approvals?limit=0", headers=bob), 422, "limit")
    assert is_problem(client.get("/approvals?limit=1001", headers=bob), 422, "limit")
    assert is_problem(client.get("/approvals?offset=-1", headers=bob), 422, "offset")
    assert is_problem(client.get(f"/approvals?offset={2**63}", headers=bob), 422, "offset")


def test_metadata_and_kpi_reads(client, bearer, tenant):
    alice, bob = bearer(tenant, "alice"), bearer(tenant, "bob", STEWARD, KERNEL_OWNER)
    _approved(client, alice, bob, metadata_request())
    _approved(client, alice, bob, metadata_request("sales.orders.count", tier="tier3"))
    _approved(client, alice, bob, kpi_request())

    listed = client.get("/metadata", headers=alice).json()
    assert [m["canonical_key"] for m in listed["items"]] == [KEY, "sales.orders.count"]
    tier3 = client.get("/metadata?tier=tier3&status=active", headers=alice).json()
    assert [m["canonical_key"] for m in tier3["items"]] == ["sales.orders.count"]
    one = client.get(f"/metadata/{KEY}", headers=alice)
    assert one.status_code == 200
    assert one.json()["binding"]["table"] == "orders"
    assert one.json()["version"] == 1
    assert is_problem(client.get("/metadata/finance.nope", headers=alice), 404)
    assert is_problem(client.get("/metadata?status=gone", headers=alice), 422, "status")

    kpis = client.get("/kpis", headers=alice).json()
    assert [k["canonical_key"] for k in kpis["items"]] == ["finance.kpi.gross_margin"]
    assert client.get("/kpis/finance.kpi.gross_margin", headers=alice).json()["name"]
    assert is_problem(client.get(f"/kpis/{KEY}", headers=alice), 404)


def test_profiles_newest_first_and_404_for_an_unknown_field(client, bearer, tenant, engine):
    alice, bob = bearer(tenant, "alice"), bearer(tenant, "bob", KERNEL_OWNER)
    _approved(client, alice, bob, metadata_request())
    assert client.get(f"/profiles?entity={KEY}", headers=alice).json() == {"items": []}
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as connection:
        for day, score in enumerate((0.5, 0.9)):
            connection.execute(
                sa.insert(tables.profiles).values(
                    id=uuid.uuid4(),
                    tenant_id=tenant,
                    entity_urn=f"urn:mdstudio:{tenant}:metadata:{KEY}",
                    canonical_key=KEY,
                    quality_score=score,
                    row_count=10,
                    columns={"gross_amount": {"nulls": 0}},
                    trigger="STRUCTURAL",
                    created_at=start + dt.timedelta(days=day),
                )
            )
    history = client.get(f"/profiles?entity={KEY}", headers=alice).json()["items"]
    assert [p["quality_score"] for p in history] == [0.9, 0.5]
    assert history[0]["columns"] == {"gross_amount": {"nulls": 0}}
    assert (
        client.get(f"/profiles?entity={KEY}&limit=1", headers=alice).json()["items"][0][
            "quality_score"
        ]
        == 0.9
    )
    assert is_problem(client.get("/profiles?entity=finance.nope", headers=alice), 404)
    assert is_problem(client.get("/profiles", headers=alice), 422, "entity")


def test_events_stream_pages_with_next_after(client, bearer, tenant):
    alice, bob = bearer(tenant, "alice"), bearer(tenant, "bob", KERNEL_OWNER, STEWARD)
    _approved(client, alice, bob, metadata_request())
    _approved(client, alice, bob, kpi_request())
    everything = client.get("/events", headers=alice).json()
    assert len(everything["items"]) == 8  # 4 for the field, 4 for the KPI
    ids = [event["id"] for event in everything["items"]]
    assert ids == sorted(ids)
    first = client.get("/events?limit=3", headers=alice).json()
    rest = client.get(f"/events?after={first['next_after']}", headers=alice).json()
    assert first["items"] + rest["items"] == everything["items"]
    assert client.get(f"/events?after={ids[-1]}", headers=alice).json() == {
        "items": [],
        "next_after": ids[-1],
    }
    kpi_only = client.get("/events?entity=finance.kpi.gross_margin", headers=alice).json()
    assert [e["type"] for e in kpi_only["items"]] == [
        "kpi.approved",
        "kpi.changed",
        "lineage.changed",
        "approval.approved",
    ]
    assert is_problem(client.get("/events?after=-1", headers=alice), 422, "after")


def test_healthz_needs_no_token_and_reports_a_missing_schema(client, tmp_path):
    from fastapi.testclient import TestClient

    from mdstudio_core.adapters.database import create_store_engine
    from mdstudio_core.entrypoints.http import create_app

    assert client.get("/healthz").json() == {"status": "ok", "revision": migrations.head_revision()}
    bare = create_store_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    with TestClient(create_app(engine=bare)) as unmigrated:
        assert is_problem(unmigrated.get("/healthz"), 503)
    bare.dispose()
    down = create_store_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with TestClient(create_app(engine=down)) as unreachable:
        assert is_problem(unreachable.get("/healthz"), 503)


def test_unknown_routes_and_methods_are_problems(client):
    assert is_problem(client.get("/nowhere"), 404)
    assert is_problem(client.delete("/approvals"), 405)


def test_openapi_document(client):
    """The schema stays served (tools and the docs pages read it); the interactive docs are off
    unless MDSTUDIO_API_DOCS=1 (tests/http/test_docs.py)."""
    document = client.get("/openapi.json").json()
    assert {"/approvals", "/approvals/{approval_id}/reject", "/events", "/healthz"} <= set(
        document["paths"]
    )
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    problem = document["paths"]["/approvals"]["post"]["responses"]["422"]["content"]
    assert "application/problem+json" in problem


# -- bounded sizes ----------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    request = metadata_request()
    body = orjson.dumps(request).decode()
    deep = "[" * depth + "]" * depth
    return body.replace('"description":', f'"notes":{deep},"description":', 1).encode()


def test_oversized_payload_is_413_and_writes_nothing(client, bearer, tenant, engine):
    alice = bearer(tenant, "alice")
    before = store_snapshot(engine)
    big = metadata_request(description="x" * 9_000)
    big["payload"]["binding"]["columns"] = [
        {"name": f"c{i}", "allowed_values": [f"value-{j}" for j in range(20)]} for i in range(300)
    ]
    response = client.post("/approvals", json=big, headers=alice)
    assert is_problem(response, 413, "payload")
    assert "MDSTUDIO_MAX_PAYLOAD_BYTES" in response.json()["detail"]
    assert store_snapshot(engine) == before


def test_allowed_values_hold_at_most_a_thousand(client, bearer, tenant):
    request = metadata_request()
    request["payload"]["binding"]["columns"][0] = {
        "name": "currency",
        "allowed_values": [f"v{i}" for i in range(1001)],
    }
    response = client.post("/approvals", json=request, headers=bearer(tenant, "alice"))
    assert is_problem(response, 422, "payload.binding.columns[0].allowed_values")


@pytest.mark.parametrize("depth", [40, 500, 5000, 100_000])
def test_deep_nesting_is_422_never_500(client, bearer, tenant, engine, depth):
    headers = {**bearer(tenant, "alice"), "content-type": "application/json"}
    before = store_snapshot(engine)
    response = client.post("/approvals", content=_nested(depth), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["field"].startswith(("payload", "body"))
    assert store_snapshot(engine) == before


def test_list_pages_carry_payloads_only_when_asked(client, bearer, tenant):
    alice, bob = bearer(tenant, "alice"), bearer(tenant, "bob", KERNEL_OWNER)
    _approved(client, alice, bob, metadata_request())
    update = client.post(
        "/approvals", json=metadata_request(description="again"), headers=alice
    ).json()
    lean = client.get("/approvals", headers=bob).json()["items"]
    assert {item["id"] for item in lean} >= {update["id"]}
    assert all("payload" not in item and "current_state" not in item for item in lean)
    assert all({"status", "entity_key", "required_role"} <= set(item) for item in lean)
    full = client.get("/approvals?include=payload", headers=bob).json()["items"]
    [shown] = [item for item in full if item["id"] == update["id"]]
    assert shown["payload"]["description"] == "again"
    assert shown["current_state"]["version"] == 1
    assert is_problem(client.get("/approvals?include=everything", headers=bob), 422, "include")
