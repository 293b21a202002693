"""Signing in and out: the cookie's properties, what is stored, expiry, revocation, CSRF."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.service_layer import approvals, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.console.conftest import csrf_of, error_of
from tests.factories import KERNEL_OWNER, SETTINGS, metadata_request, person, store_snapshot


def _session_rows(engine):
    with engine.connect() as connection:
        return list(connection.execute(sa.select(tables.console_sessions)))


def test_sign_in_sets_an_httponly_strict_cookie_holding_a_hashed_opaque_id(browser, engine, tenant):
    bob = browser(tenant, "bob", KERNEL_OWNER, signed_in=False)
    page = bob.get("/ui/login")
    assert 'data-testid="login-token"' in page.text and 'data-testid="login-submit"' in page.text
    response = bob.client.post(
        "/ui/login",
        data={"token": bob.secret, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/ui/"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("mdstudio_session=")
    )
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/ui" in attributes
    assert "secure" not in attributes  # plain HTTP: a Secure cookie would never come back
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert session_id and bob.secret not in cookie
    [row] = _session_rows(engine)
    assert row.session_hash == hashlib.sha256(session_id.encode()).hexdigest()
    stored = str(store_snapshot(engine))
    assert session_id not in stored and bob.secret not in stored  # only hashes are kept
    assert "bob" in bob.get("/ui/").text


def test_over_https_the_cookie_is_secure(browser, tenant):
    alice = browser(tenant, "alice", signed_in=False, https=True)
    page = alice.get("/ui/login")
    response = alice.client.post(
        "/ui/login",
        data={"token": alice.secret, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith("mdstudio_session=")
    )
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


def test_the_session_expires_no_later_than_its_token(browser, engine, tenant):
    short = browser(tenant, "carol", expires_in=dt.timedelta(minutes=30))
    [row] = _session_rows(engine)
    [token] = [t for t in tokens.list_tokens(UnitOfWork(engine)) if t.user == "carol"]
    assert row.expires_at <= token.expires_at
    assert row.expires_at - row.created_at <= dt.timedelta(minutes=30)
    long_lived = browser(tenant, "dave", expires_in=None)  # a token that never expires
    rows = sorted(_session_rows(engine), key=lambda r: r.created_at)
    assert rows[-1].expires_at - rows[-1].created_at == dt.timedelta(hours=8)  # the default
    assert short.get("/ui/").status_code == 200 and long_lived.get("/ui/").status_code == 200


def test_a_bad_token_is_refused_on_the_page(browser, tenant):
    eve = browser(tenant, "eve", signed_in=False)
    eve.secret = "mds_not-a-token"
    response = eve.sign_in()
    assert response.status_code == 401
    assert error_of(response.text) == tokens.INVALID_TOKEN
    assert eve.get("/ui/").headers["location"] == "/ui/login"


def test_logout_ends_the_session(browser, engine, tenant):
    bob = browser(tenant, "bob", KERNEL_OWNER)
    cookie = bob.client.cookies.get("mdstudio_session")
    response = bob.post("/ui/logout")
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    assert _session_rows(engine) == []
    bob.client.cookies.set("mdstudio_session", cookie, path="/ui")  # a copy of the old cookie
    assert bob.get("/ui/").headers["location"] == "/ui/login"


def test_revoking_the_token_ends_its_sessions(browser, engine, tenant):
    bob = browser(tenant, "bob", KERNEL_OWNER)
    assert bob.get("/ui/").status_code == 200
    [token] = tokens.list_tokens(UnitOfWork(engine))
    tokens.revoke_token(UnitOfWork(engine), token.id)
    assert bob.get("/ui/").headers["location"] == "/ui/login"
    assert _session_rows(engine) == []


def test_a_post_without_a_valid_csrf_token_is_403_and_changes_nothing(browser, engine, tenant):
    approval = approvals.submit(
        UnitOfWork(engine), person(tenant, "alice"), metadata_request(), SETTINGS
    )
    bob = browser(tenant, "bob", KERNEL_OWNER)
    before = store_snapshot(engine)
    for path in (
        f"/ui/approvals/{approval.id}/approve",
        f"/ui/approvals/{approval.id}/reject",
        f"/ui/approvals/{approval.id}/evidence",
        "/ui/logout",
    ):
        missing = bob.post(path, {"reason": "r"}, csrf=False)
        forged = bob.post(path, {"reason": "r", "csrf_token": "0" * 64}, csrf=False)
        for response in (missing, forged):
            assert response.status_code == 403, path
            assert "CSRF" in error_of(response.text)
    assert store_snapshot(engine) == before
    # Another session's token is no good either.
    carol = browser(tenant, "carol", KERNEL_OWNER)
    cross = bob.post(f"/ui/approvals/{approval.id}/approve", {"csrf_token": carol.csrf}, csrf=False)
    assert cross.status_code == 403


def test_the_sign_in_form_needs_its_csrf_token(browser, engine, tenant):
    bob = browser(tenant, "bob", signed_in=False)
    bob.get("/ui/login")  # sets the double-submit cookie
    response = bob.client.post("/ui/login", data={"token": bob.secret}, follow_redirects=False)
    assert response.status_code == 403
    assert _session_rows(engine) == []


def test_pages_need_a_session_and_answer_with_security_headers(browser, tenant):
    anonymous = browser(tenant, "x", signed_in=False)
    for path in ("/ui/", "/ui/incidents", "/ui/entities/a.b", f"/ui/approvals/{tenant}"):
        assert anonymous.get(path).headers["location"] == "/ui/login"
    bob = browser(tenant, "bob")
    page = bob.get("/ui/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert re.fullmatch(r"app;dur=\d+\.\d", page.headers["server-timing"])
    # Every stylesheet and script is served by us: no other origin appears on the page.
    assert "http://" not in page.text and "https://" not in page.text
    assert bob.get("/ui/static/console.css").status_code == 200
