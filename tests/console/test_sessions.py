"""Signing in and out: the cookie's properties (`__Host-` over HTTPS), what is stored, expiry, the
idle timeout, revocation, CSRF (the sign-in pair bound by the server's key), and the sign-in
attempts allowed per client address and minute."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import time

import sqlalchemy as sa
from fastapi.testclient import TestClient

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import approvals, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.console.conftest import Browser, csrf_of, error_of
from tests.support.factories import KERNEL_OWNER, SETTINGS, metadata_request, person, store_snapshot


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


def _cookie_attributes(response, name):
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(name + "="))
    return cookie.split(";")[0].split("=", 1)[1], [p.strip().lower() for p in cookie.split(";")]


def test_over_https_the_session_cookie_is_host_prefixed(browser, engine, tenant):
    """`__Host-mdstudio_session`: Secure, Path=/, no Domain, so no other host and no plain-HTTP
    page can set it; over HTTPS an unprefixed cookie (which could have been planted) opens
    nothing, and signing out clears the prefixed one."""
    alice = browser(tenant, "alice", signed_in=False, https=True)
    page = alice.get("/ui/login")
    response = alice.client.post(
        "/ui/login",
        data={"token": alice.secret, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    session_id, attributes = _cookie_attributes(response, "__Host-mdstudio_session")
    assert {"secure", "path=/", "httponly", "samesite=strict"} <= set(attributes)
    assert not [a for a in attributes if a.startswith("domain")]
    assert not [c for c in response.headers.get_list("set-cookie") if c.startswith("mdstudio_s")]
    [row] = _session_rows(engine)
    assert row.session_hash == hashlib.sha256(session_id.encode()).hexdigest()
    assert alice.get("/ui/").status_code == 200
    alice.csrf = csrf_of(alice.get("/ui/").text)
    planted = browser(tenant, "mallory", signed_in=False, https=True)
    planted.client.cookies.set("mdstudio_session", session_id, path="/ui")
    assert planted.get("/ui/").headers["location"] == "/ui/login"
    signed_out = alice.post("/ui/logout")
    _, cleared = _cookie_attributes(signed_out, "__Host-mdstudio_session")
    assert {"max-age=0", "path=/", "secure"} <= set(cleared)
    assert _session_rows(engine) == []


def test_the_session_expires_no_later_than_its_token(browser, engine, uow, tenant):
    short = browser(tenant, "carol", expires_in=dt.timedelta(minutes=30))
    [row] = _session_rows(engine)
    [token] = [t for t in tokens.list_tokens(uow) if t.user == "carol"]
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


def test_revoking_the_token_ends_its_sessions(browser, engine, uow, tenant):
    bob = browser(tenant, "bob", KERNEL_OWNER)
    assert bob.get("/ui/").status_code == 200
    [token] = tokens.list_tokens(uow)
    tokens.revoke_token(uow, token.id)
    assert bob.get("/ui/").headers["location"] == "/ui/login"
    assert _session_rows(engine) == []


def test_a_post_without_a_valid_csrf_token_is_403_and_changes_nothing(browser, engine, uow, tenant):
    approval = approvals.submit(uow, person(tenant, "alice"), metadata_request(), SETTINGS)
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


# -- the idle timeout ------------------------------------------------------------------------


def _set_last_seen(engine, at):
    with engine.begin() as connection:
        connection.execute(sa.update(tables.console_sessions).values(last_seen_at=at))


def test_a_session_idle_past_the_timeout_goes_back_to_the_sign_in_page(browser, engine, tenant):
    bob = browser(tenant, "bob", KERNEL_OWNER)
    now = dt.datetime.now(dt.UTC)
    _set_last_seen(engine, now - dt.timedelta(minutes=29))  # idle, not for long enough
    assert bob.get("/ui/").status_code == 200
    [row] = _session_rows(engine)
    assert row.last_seen_at >= now  # the page noted it
    _set_last_seen(engine, now - dt.timedelta(minutes=31))  # MDSTUDIO_CONSOLE_IDLE_MINUTES=30
    assert bob.get("/ui/").headers["location"] == "/ui/login"
    assert bob.get("/ui/incidents").headers["location"] == "/ui/login"


def test_the_idle_timeout_is_the_setting(engine, console_settings, tenant):
    app = create_app(console_settings.model_copy(update={"console_idle_minutes": 60}), engine)
    bob = _signed_in(app, engine, tenant)
    _set_last_seen(engine, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=45))
    assert bob.get("/ui/").status_code == 200


def test_pages_within_the_minute_write_the_last_seen_time_once(browser, engine, tenant):
    bob = browser(tenant, "bob", KERNEL_OWNER)
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    _set_last_seen(engine, recent)
    for _ in range(3):
        assert bob.get("/ui/").status_code == 200
    [row] = _session_rows(engine)
    assert row.last_seen_at == recent


def _signed_in(app, engine, tenant):
    secret, _ = tokens.create_token(UnitOfWork(engine), person(tenant, "bob", KERNEL_OWNER))
    user = Browser(TestClient(app), secret)
    assert user.sign_in().status_code == 303
    return user


# -- sign-in attempts per client address -----------------------------------------------------


def _within_one_minute():
    """Wait past a minute's end when it is close, so a burst of attempts stays in one minute."""
    second = time.time() % 60
    if second > 50:
        time.sleep(60.5 - second)


def _attempt(client, token="mds_wrong"):
    page = client.get("/ui/login")
    return client.post(
        "/ui/login",
        data={"token": token, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )


def test_sign_in_attempts_past_the_limit_get_429_with_retry_after(browser, engine, tenant):
    """Ten attempts a minute per client address (MDSTUDIO_CONSOLE_LOGIN_ATTEMPTS_PER_MINUTE);
    the eleventh is refused before its token is looked at, even the right one; another address
    is not held back."""
    eve = browser(tenant, "eve", signed_in=False)
    _within_one_minute()
    for _ in range(10):
        assert _attempt(eve.client).status_code == 401
    refused = _attempt(eve.client, token=eve.secret)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "too many sign-in attempts" in error_of(refused.text)
    assert refused.headers["x-frame-options"] == "DENY"
    assert _session_rows(engine) == []
    elsewhere = TestClient(eve.client.app, client=("203.0.113.5", 50000))
    assert _attempt(elsewhere, token=eve.secret).status_code == 303


def test_the_attempt_limit_holds_across_server_processes(engine, store_url, console_settings):
    """Two apps with engines of their own on one store (two server processes): the count is the
    store's, so five attempts on each use up the client's ten."""
    other_engine = create_store_engine(store_url)
    settings = console_settings.model_copy(update={"console_login_attempts_per_minute": 10})
    first = TestClient(create_app(settings, engine))
    second = TestClient(create_app(settings, other_engine))
    _within_one_minute()
    for _ in range(5):
        assert _attempt(first).status_code == 401
        assert _attempt(second).status_code == 401
    assert _attempt(first).status_code == 429
    assert _attempt(second).status_code == 429
    other_engine.dispose()


def test_the_attempt_limit_is_the_setting(engine, console_settings):
    settings = console_settings.model_copy(update={"console_login_attempts_per_minute": 2})
    client = TestClient(create_app(settings, engine))
    _within_one_minute()
    assert [_attempt(client).status_code for _ in range(3)] == [401, 401, 429]


# -- the sign-in form's CSRF pair ------------------------------------------------------------


def _login_pair(client):
    """(cookie, field) of a sign-in form the server served."""
    page = client.get("/ui/login")
    return client.cookies.get("mdstudio_login_csrf"), csrf_of(page.text)


def _post_login(client, cookie, field, token):
    client.cookies.clear()
    return client.post(
        "/ui/login",
        data={"token": token, "csrf_token": field},
        headers={"Cookie": f"mdstudio_login_csrf={cookie}"},
        follow_redirects=False,
    )


def _stored_key(engine):
    with engine.connect() as connection:
        return bytes.fromhex(
            connection.execute(sa.select(tables.server_keys.c.secret)).scalar_one()
        )


def _field(key, cookie):
    return hmac.new(key, b"mdstudio-console-login:" + cookie.encode(), hashlib.sha256).hexdigest()


def test_a_sign_in_pair_planted_from_elsewhere_does_not_pass(browser, engine, tenant):
    """The field must be the HMAC of its own cookie under the server's key: a double-submit
    pair (field = cookie), a field computed under another key, and one pair's field with
    another pair's cookie are all refused, and no session is opened."""
    bob = browser(tenant, "bob", signed_in=False)
    client = bob.client
    cookie_a, field_a = _login_pair(client)
    cookie_b, field_b = _login_pair(client)
    assert cookie_a != cookie_b and field_a != field_b and field_a != cookie_a
    nonce = f"{'n' * 43}.{int(time.time())}"
    forged = [
        (nonce, nonce),  # the old double-submit check's pair
        (nonce, _field(b"\0" * 32, nonce)),  # without the server's key
        (cookie_b, field_a),  # a valid pair's field with another valid cookie
        (cookie_a, field_a.upper()),
        (cookie_a, ""),
        ("", field_a),
    ]
    for cookie, field in forged:
        response = _post_login(client, cookie, field, bob.secret)
        assert response.status_code == 403, (cookie, field)
        assert "CSRF" in error_of(response.text)
    assert _session_rows(engine) == []
    assert _post_login(client, cookie_a, field_a, bob.secret).status_code == 303


def test_a_sign_in_pair_expires_after_an_hour(browser, engine, tenant):
    bob = browser(tenant, "bob", signed_in=False)
    _login_pair(bob.client)  # the server makes its key
    key = _stored_key(engine)
    for age, status in ((3700, 403), (-600, 403), (3500, 303)):
        cookie = f"{'n' * 43}.{int(time.time()) - age}"
        assert (
            _post_login(bob.client, cookie, _field(key, cookie), bob.secret).status_code == status
        )


def test_every_server_process_checks_the_pair_with_the_one_stored_key(
    engine, uow, store_url, console_settings, tenant
):
    """A form served by one process is accepted by another sharing the store: the key is made
    once in the store, not per process."""
    other_engine = create_store_engine(store_url)
    first = TestClient(create_app(console_settings, engine))
    second = TestClient(create_app(console_settings, other_engine))
    secret, _ = tokens.create_token(uow, person(tenant, "bob"))
    cookie, field = _login_pair(first)
    assert _post_login(second, cookie, field, secret).status_code == 303
    with engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(tables.server_keys)).scalar()
            == 1
        )
    other_engine.dispose()
