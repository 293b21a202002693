"""`mdstudio serve` for real: a uvicorn process on a free port, called over HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid

import httpx

from mdstudio_core.adapters import migrations
from mdstudio_core.service_layer import tokens
from tests.support.factories import metadata_request, person
from tests.support.servers import free_port, healthz_when_up


def test_serve_answers_healthz_and_an_authorised_route(store_url, uow):
    server, base = _serve(store_url)
    try:
        health = healthz_when_up(server, base, timeout_s=30)
        assert health.json() == {"status": "ok", "revision": migrations.head_revision()}
        secret, _ = tokens.create_token(uow, person(uuid.uuid4(), "alice"))
        headers = {"Authorization": f"Bearer {secret}"}
        submitted = httpx.post(f"{base}/approvals", json=metadata_request(), headers=headers)
        assert submitted.status_code == 201
        listed = httpx.get(f"{base}/approvals", headers=headers).json()
        assert [a["id"] for a in listed["items"]] == [submitted.json()["id"]]
        assert httpx.get(f"{base}/approvals").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=15)


def _serve(store_url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mdstudio_core.entrypoints.cli", "serve", "--port", str(port)],
        env={**os.environ, "MDSTUDIO_DATABASE_URL": store_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return server, f"http://127.0.0.1:{port}"


def test_two_servers_share_the_sign_in_limit_and_key_and_trust_the_proxys_https(store_url, uow):
    """Two `mdstudio serve` processes on one store, behind a proxy on 127.0.0.1 (which uvicorn
    trusts for X-Forwarded-Proto and X-Forwarded-For): a sign-in form from one is accepted by
    the other (one key, in the store); the session cookie is `__Host-` since the proxy says
    HTTPS; ten attempts from one client address across both servers use up its minute, the
    eleventh gets 429 with Retry-After on either; another address is not held back."""
    servers = [_serve(store_url) for _ in range(2)]
    try:
        for server, base in servers:
            healthz_when_up(server, base, timeout_s=30)
        (_, first), (_, second) = servers
        secret, _ = tokens.create_token(uow, person(uuid.uuid4(), "alice"))
        over_https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.20"}
        second_of_minute = time.time() % 60
        if second_of_minute > 45:  # keep the attempts inside one minute
            time.sleep(60.5 - second_of_minute)

        def attempt(base: str, token: str, headers: dict[str, str]) -> httpx.Response:
            page = httpx.get(f"{first}/ui/login", headers=headers)
            field = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            return httpx.post(
                f"{base}/ui/login",
                data={"token": token, "csrf_token": field},
                headers=headers | {"Cookie": page.headers["set-cookie"].split(";")[0]},
            )

        signed_in = attempt(second, secret, over_https)
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"]
        assert cookie.startswith("__Host-mdstudio_session=") and "Secure" in cookie
        session = cookie.split(";")[0]
        assert (
            httpx.get(f"{first}/ui/", headers=over_https | {"Cookie": session}).status_code == 200
        )
        for n in range(9):
            assert attempt((first, second)[n % 2], "mds_wrong", over_https).status_code == 401
        for base in (first, second):
            refused = attempt(base, secret, over_https)
            assert refused.status_code == 429
            assert 1 <= int(refused.headers["retry-after"]) <= 60
        elsewhere = over_https | {"X-Forwarded-For": "198.51.100.21"}
        assert attempt(first, secret, elsewhere).status_code == 303
    finally:
        for server, _ in servers:
            server.terminate()
            server.wait(timeout=15)
