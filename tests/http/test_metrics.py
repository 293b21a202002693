"""`GET /metrics`: the catalog's truth read from the store at scrape time (SQLite and
PostgreSQL), requests by route template and standard method, only for the bearer of
`MDSTUDIO_METRICS_TOKEN` (no token: no metrics, 404); and under `mdstudio serve --workers 2`,
requests counted across workers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mdstudio_core.config import Settings
from mdstudio_core.domain.model import Tier
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import approvals
from tests.store.test_incidents import save
from tests.support.factories import (
    DEMO_BINDING,
    SETTINGS,
    approve_metadata,
    metadata_request,
    person,
)
from tests.support.servers import free_port, healthz_when_up

TOKEN = "scrape-me-0123456789"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}


def scraped(engine, env: dict[str, str] | None = None) -> TestClient:
    """A client of an app with metrics on (and the settings of `env`), sending the scraper's
    bearer token."""
    settings = Settings.from_env({"MDSTUDIO_METRICS_TOKEN": TOKEN, **(env or {})})
    return TestClient(create_app(settings, engine), headers=SCRAPER)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found, name, **labels):
    return found.get((name, frozenset(labels.items())))


def test_the_catalog_as_prometheus_sees_it(engine, uow, tenant):
    client = scraped(engine)
    save(engine, tenant, 40.0, "run-1")
    save(engine, tenant, 75.5, "run-1", key="sales.orders.region", tier=Tier.TIER2)
    save(engine, tenant, 10.0, "run-1", key="sales.orders.channel", tier=Tier.TIER3)
    alice = person(tenant, "alice")
    pending = approvals.submit(uow, alice, metadata_request(), SETTINGS)
    decided = approvals.submit(uow, alice, metadata_request(key="finance.revenue.other"), SETTINGS)
    approvals.reject(uow, person(tenant, "kim", "kernel_owner"), decided.id, "no")
    client.get(f"/approvals/{uuid.uuid4()}")  # 401, under its template
    client.get("/no/such/path")

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    t = str(tenant)
    # Only fields with a score count, and the catalog tables hold none yet: the scores come
    # from profiles of live fields, so the approval above adds no score.
    assert value(found, "mdstudio_quality_threshold", tier="tier1") == 80
    assert value(found, "mdstudio_quality_threshold", tier="tier2") == 70
    assert value(found, "mdstudio_quality_incidents_open", tenant=t, tier="tier1") == 1
    assert value(found, "mdstudio_quality_incidents_open", tenant=t, tier="tier2") is None
    assert value(found, "mdstudio_profiles_total", tenant=t, tier="tier1", outcome="completed") == 1
    assert value(found, "mdstudio_approvals_pending", tenant=t, tier="tier1", lane="kernel") == 1
    assert value(found, "mdstudio_approval_oldest_pending_seconds", tenant=t) >= 0
    assert value(found, "mdstudio_approvals_decided_total", tenant=t, decision="rejected") == 1
    assert value(found, "mdstudio_approval_decision_seconds_count", tier="tier1") == 1
    assert value(found, "mdstudio_outbox_last_event_id") > 0
    assert value(found, "mdstudio_outbox_consumer_lag_events", consumer="approval_sensor") == (
        value(found, "mdstudio_outbox_last_event_id")
    )
    assert value(found, "mdstudio_outbox_dead_letters", consumer="approval_sensor") == 0
    requests = value(
        found,
        "mdstudio_http_requests_total",
        method="GET",
        route="/approvals/{approval_id}",
        status="401",
    )
    assert requests >= 1
    assert value(
        found, "mdstudio_http_requests_total", method="GET", route="unmatched", status="404"
    )
    assert "/no/such/path" not in response.text and str(pending.id) not in response.text


def test_scores_are_the_latest_profile_of_live_tier1_and_tier2_fields(engine, tenant):
    client = scraped(engine)
    for key, tier in (
        ("finance.revenue.gross_amount", "tier1"),
        ("sales.orders.region", "tier2"),
        ("sales.orders.channel", "tier3"),
    ):
        approve_metadata(engine, tenant, key=key, tier=tier, binding=DEMO_BINDING)
    save(engine, tenant, 40.0, "run-1")
    save(engine, tenant, 88.25, "run-2")  # newer: the one reported
    save(engine, tenant, 75.5, "run-1", key="sales.orders.region", tier=Tier.TIER2)
    save(engine, tenant, 10.0, "run-1", key="sales.orders.channel", tier=Tier.TIER3)
    found = samples(client.get("/metrics").text)
    t = str(tenant)
    assert (
        value(
            found,
            "mdstudio_quality_score",
            tenant=t,
            entity="finance.revenue.gross_amount",
            tier="tier1",
        )
        == 88.25
    )
    assert (
        value(found, "mdstudio_quality_score", tenant=t, entity="sales.orders.region", tier="tier2")
        == 75.5
    )
    assert (
        value(
            found, "mdstudio_quality_score", tenant=t, entity="sales.orders.channel", tier="tier3"
        )
        is None
    )
    assert value(found, "mdstudio_profile_duration_seconds_count", tier="tier1") == 2


def test_a_metrics_token_is_required_when_set(engine, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_METRICS_TOKEN", "scrape-me")
    client = TestClient(create_app(Settings.from_env(), engine))
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic scrape-me"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200 and "mdstudio_quality_threshold" in ok.text


def test_without_a_token_there_are_no_metrics(engine, tenant, monkeypatch):
    monkeypatch.delenv("MDSTUDIO_METRICS_TOKEN", raising=False)
    save(engine, tenant, 40.0, "run-1")
    client = TestClient(create_app(Settings.from_env(), engine))
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        answer = client.get("/metrics", headers=headers)
        assert answer.status_code == 404
        assert str(tenant) not in answer.text and "mdstudio_" not in answer.text
    # The same answer as a path that does not exist: nothing tells there could be metrics.
    nowhere = client.get("/nowhere")
    assert answer.json() == {**nowhere.json(), "instance": "/metrics"}
    assert answer.headers["content-type"] == nowhere.headers["content-type"]


def other_requests(client: TestClient) -> float:
    """Requests counted under `method="other"` so far (the counters live as long as the
    process)."""
    return sum(
        count
        for (name, labels), count in samples(client.get("/metrics").text).items()
        if name == "mdstudio_http_requests_total" and dict(labels)["method"] == "other"
    )


def test_only_standard_methods_are_labels(engine):
    client = scraped(engine)
    before = other_requests(client)
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        client.request(method, "/healthz")
    for invented in ("BREW", "PROPFIND", "X" * 200):
        client.request(invented, "/healthz")
    found = samples(client.get("/metrics").text)
    methods = {
        dict(labels)["method"]
        for name, labels in found
        if name in ("mdstudio_http_requests_total", "mdstudio_http_request_duration_seconds_count")
    }
    assert methods == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert other_requests(client) == before + 3


def serve(store_url: str, *args: str, **env: str) -> tuple[subprocess.Popen, str]:
    """`mdstudio serve` on a free port with these settings, once it answers; and its base URL."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mdstudio_core.entrypoints.cli",
            "serve",
            "--port",
            str(port),
            "--no-access-log",
            *args,
        ],
        env={
            **{k: v for k, v in os.environ.items() if k != "MDSTUDIO_METRICS_TOKEN"},
            "MDSTUDIO_DATABASE_URL": store_url,
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    healthz_when_up(server, base, timeout_s=60)
    return server, base


def stop(server: subprocess.Popen) -> str:
    """End the server; what it wrote to standard error."""
    server.terminate()
    return server.communicate(timeout=15)[1].decode()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_serve_says_at_start_that_metrics_are_off_and_how_to_turn_them_on(store_url, engine):
    server, base = serve(store_url)
    try:
        assert httpx.get(f"{base}/metrics").status_code == 404
    finally:
        said = stop(server)
    assert (
        "mdstudio serve: metrics are off (/metrics answers 404). To turn them on, set "
        "MDSTUDIO_METRICS_TOKEN to a long random secret and have Prometheus send it as a bearer "
        "token (see deploy/prometheus/prometheus.yml)."
    ) in said


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_requests_are_counted_across_workers(store_url, engine):
    server, base = serve(store_url, "--workers", "2", MDSTUDIO_METRICS_TOKEN=TOKEN)
    try:
        for _ in range(40):  # new connections: both workers take some
            httpx.get(f"{base}/healthz", headers={"Connection": "close"})
        found = samples(httpx.get(f"{base}/metrics", headers=SCRAPER).text)
        served = value(
            found, "mdstudio_http_requests_total", method="GET", route="/healthz", status="200"
        )
        assert served >= 41  # every worker's count, whichever worker answered the scrape
    finally:
        said = stop(server)
    assert "mdstudio serve: metrics at /metrics, for a bearer of MDSTUDIO_METRICS_TOKEN." in said
