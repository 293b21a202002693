"""Who may do what over HTTP: the workflow's rules (role, four-eyes, tenant) and nothing else,
with identity fixed by the token."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest
from fastapi.testclient import TestClient

from mdstudio_core.config import Settings
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import tokens
from tests.http.conftest import is_problem
from tests.support.cli_helpers import run_cli
from tests.support.factories import KERNEL_OWNER, STEWARD, metadata_request, person, store_snapshot

# The policy, stated independently of the code under test (README, "The approval rules"): the
# lane's role, except that anything tier1 needs the kernel owner.
REQUIRED_ROLE = {"kernel": KERNEL_OWNER, "governed": STEWARD, "draft": STEWARD}


def required(tier: str, lane: str) -> str:
    return KERNEL_OWNER if tier == "tier1" else REQUIRED_ROLE[lane]


ALLOWED_LANES = {
    "tier1": {"kernel", "draft"},
    "tier2": set(REQUIRED_ROLE),
    "tier3": set(REQUIRED_ROLE),
}
ROLES = {"none": (), "steward": (STEWARD,), "kernel_owner": (KERNEL_OWNER,)}


@pytest.mark.parametrize(
    ("role", "tier", "lane", "same_tenant", "action"),
    list(
        itertools.product(
            ROLES, ("tier1", "tier2", "tier3"), REQUIRED_ROLE, (True, False), ("approve", "reject")
        )
    ),
)
def test_authorisation_matrix(client, bearer, engine, role, tier, lane, same_tenant, action):
    tenant = uuid.uuid4()
    request = metadata_request(f"matrix.{tier}.{lane}", tier=tier, lane=lane)
    submitted = client.post("/approvals", json=request, headers=bearer(tenant, "requester"))
    if lane not in ALLOWED_LANES[tier]:
        assert is_problem(submitted, 422, "lane")
        return
    assert submitted.status_code == 201
    assert submitted.json()["required_role"] == required(tier, lane)

    decider = bearer(tenant if same_tenant else uuid.uuid4(), "decider", *ROLES[role])
    before = store_snapshot(engine)
    url = f"/approvals/{submitted.json()['id']}/{action}"
    response = client.post(url, json={"reason": "matrix"}, headers=decider)
    if not same_tenant:
        assert is_problem(response, 404)
    elif required(tier, lane) not in ROLES[role]:
        assert is_problem(response, 403)
        assert required(tier, lane) in response.json()["detail"]
    else:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == {"approve": "approved", "reject": "rejected"}[action]
        return
    assert store_snapshot(engine) == before


def test_four_eyes_holds_even_with_every_role(client, bearer, tenant):
    almighty = bearer(tenant, "alice", STEWARD, KERNEL_OWNER, "tenant_admin")
    pending = client.post("/approvals", json=metadata_request(), headers=almighty).json()
    response = client.post(f"/approvals/{pending['id']}/approve", headers=almighty)
    assert is_problem(response, 403)
    assert "four-eyes" in response.json()["detail"]


def test_cross_tenant_reads_and_writes_are_all_404(client, bearer, engine):
    home, away = uuid.uuid4(), uuid.uuid4()
    owner = bearer(home, "alice")
    approver = bearer(home, "bob", KERNEL_OWNER)
    key = "finance.revenue.gross_amount"
    done = client.post("/approvals", json=metadata_request(), headers=owner).json()
    client.post(f"/approvals/{done['id']}/approve", headers=approver)
    pending = client.post("/approvals", json=metadata_request(label="New"), headers=owner).json()

    intruder = bearer(away, "mallory", STEWARD, KERNEL_OWNER, "tenant_admin")
    before = store_snapshot(engine)
    for method, path, body in [
        ("get", f"/approvals/{pending['id']}", None),
        ("post", f"/approvals/{pending['id']}/approve", None),
        ("post", f"/approvals/{pending['id']}/reject", {"reason": "mine now"}),
        ("post", f"/approvals/{pending['id']}/cancel", None),
        ("get", f"/metadata/{key}", None),
        ("get", f"/profiles?entity={key}", None),
    ]:
        response = client.request(method, path, json=body, headers=intruder)
        assert is_problem(response, 404), (path, response.text)
        assert str(home) not in response.text
    for path in ("/approvals", "/metadata", "/events", "/kpis"):
        assert client.get(path, headers=intruder).json()["items"] == [], path
    assert store_snapshot(engine) == before


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer mds_not-a-real-token", "Bearer nope", "Basic YWxpY2U6cHc=", "mds_x"],
)
def test_missing_or_bad_credentials_are_401_with_a_challenge(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = client.get("/approvals", headers=headers)
    assert is_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_expired_token_is_401(client, bearer, tenant, monkeypatch):
    headers = bearer(tenant, "alice", expires_in=dt.timedelta(hours=1))
    assert client.get("/approvals", headers=headers).status_code == 200
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1, seconds=1)
    monkeypatch.setattr(tokens, "_now", lambda: later)
    response = client.get("/approvals", headers=headers)
    assert is_problem(response, 401)
    assert response.json()["detail"] == tokens.INVALID_TOKEN


def test_revoked_token_is_401_from_the_next_request(client, uow, store_url, monkeypatch):
    tenant = uuid.uuid4()
    secret, token = tokens.create_token(uow, person(tenant, "alice", STEWARD))
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/approvals", headers=headers).status_code == 200
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    assert run_cli(["tokens", "revoke", str(token.id)]).exit_code == 0
    response = client.get("/approvals", headers=headers)
    assert is_problem(response, 401)
    assert response.json()["detail"] == tokens.INVALID_TOKEN


def test_a_401_does_not_tell_revoked_from_expired_from_unknown(client, uow, monkeypatch):
    """Whoever holds a leaked token learns nothing about it from the answer."""
    tenant = uuid.uuid4()
    short, _ = tokens.create_token(uow, person(tenant, "a"), dt.timedelta(hours=1))
    revoked, token = tokens.create_token(uow, person(tenant, "b"))
    tokens.revoke_token(uow, token.id)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    monkeypatch.setattr(tokens, "_now", lambda: later)
    unknown = "mds_" + "x" * 43
    answers = {
        client.get("/approvals", headers={"Authorization": f"Bearer {secret}"}).content
        for secret in (short, revoked, unknown, "not-a-token")
    }
    assert len(answers) == 1


def test_proxy_headers_are_ignored_unless_trusted(client, bearer, engine, tenant):
    claimed = {"x-tenant-id": str(tenant), "x-user-id": "bob", "x-role": KERNEL_OWNER}
    assert is_problem(client.get("/approvals", headers=claimed), 401)

    with TestClient(create_app(Settings(trusted_header_auth=True), engine)) as behind_proxy:
        alice = {"x-tenant-id": str(tenant), "x-user-id": "alice", "x-role": ""}
        pending = behind_proxy.post("/approvals", json=metadata_request(), headers=alice)
        assert pending.status_code == 201
        assert pending.json()["requested_by"] == "alice"
        url = f"/approvals/{pending.json()['id']}/approve"
        bob = {**claimed, "x-role": f"{STEWARD}, {KERNEL_OWNER}"}
        assert behind_proxy.post(url, headers=bob).status_code == 200
        for broken in ({**claimed, "x-tenant-id": "acme"}, {**claimed, "x-user-id": ""}):
            assert is_problem(behind_proxy.get("/approvals", headers=broken), 401)


def test_a_token_cannot_be_widened_by_headers(engine, bearer, tenant):
    other_tenant = uuid.uuid4()
    with TestClient(create_app(Settings(trusted_header_auth=True), engine)) as behind_proxy:
        alice = bearer(tenant, "alice")
        pending = behind_proxy.post("/approvals", json=metadata_request(), headers=alice).json()
        widened = {
            **bearer(tenant, "carol"),
            "x-tenant-id": str(tenant),
            "x-user-id": "root",
            "x-role": KERNEL_OWNER,
        }
        response = behind_proxy.post(f"/approvals/{pending['id']}/approve", headers=widened)
        assert is_problem(response, 403)
        assert "you have: none" in response.json()["detail"]
        elsewhere = {**bearer(other_tenant, "carol"), "x-tenant-id": str(tenant)}
        assert is_problem(behind_proxy.get(f"/approvals/{pending['id']}", headers=elsewhere), 404)
