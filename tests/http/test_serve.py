"""`mdstudio serve` for real: a uvicorn process on a free port, called over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import httpx

from mdstudio_core.adapters import migrations
from mdstudio_core.service_layer import tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.factories import metadata_request, person


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_answers_healthz_and_an_authorised_route(store_url, engine):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mdstudio_core.entrypoints.cli", "serve", "--port", str(port)],
        env={**os.environ, "MDSTUDIO_DATABASE_URL": store_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.json() == {"status": "ok", "revision": migrations.head_revision()}
        secret, _ = tokens.create_token(UnitOfWork(engine), person(uuid.uuid4(), "alice"))
        headers = {"Authorization": f"Bearer {secret}"}
        submitted = httpx.post(f"{base}/approvals", json=metadata_request(), headers=headers)
        assert submitted.status_code == 201
        listed = httpx.get(f"{base}/approvals", headers=headers).json()
        assert [a["id"] for a in listed["items"]] == [submitted.json()["id"]]
        assert httpx.get(f"{base}/approvals").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=15)
