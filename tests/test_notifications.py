"""Webhook notifications through the store (SQLite and PostgreSQL) and a real receiver on
loopback: one message per run and subscription, signed, retried with backoff, dead after the
last attempt, redeliverable; and the CLI and HTTP faces."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain import notifications as rules
from mdstudio_core.domain.errors import Forbidden, InvalidInput, NotFound
from mdstudio_core.domain.model import Tier
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import notifications
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.cli_helpers import run_cli
from tests.factories import person
from tests.test_incidents import save
from tests.webhook_receiver import Receiver

KEY = "finance.revenue.gross_amount"
OTHER = "finance.revenue.net_amount"


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def settings(monkeypatch):
    monkeypatch.setenv("MDSTUDIO_NOTIFY_BACKOFF_SECONDS", "0.001")
    return Settings.from_env()


def admin(tenant):
    return person(tenant, "ada", "tenant_admin")


def subscribe(engine, tenant, url, settings, **kwargs):
    return notifications.subscribe(
        UnitOfWork(engine),
        admin(tenant),
        url,
        kwargs.get("events"),
        kwargs.get("min_tier"),
        settings,
    )


def tick(engine, settings, **kwargs):
    notifications.collect(UnitOfWork(engine), 1000)
    return notifications.send_due(lambda: UnitOfWork(engine), settings, **kwargs)


def deliveries(engine, tenant, status=None):
    return notifications.list_deliveries(UnitOfWork(engine), admin(tenant), status)


# -- the rules ----------------------------------------------------------------------------


def test_urls_must_be_http_and_allowed():
    assert rules.check_url("https://hooks.example.com/x", None) == "https://hooks.example.com/x"
    for bad in (
        "ftp://example.com/x",
        "file:///etc/passwd",
        "http://",
        "not a url",
        "http://h:99999/",
    ):
        with pytest.raises(InvalidInput) as refused:
            rules.check_url(bad, None)
        assert refused.value.field == "url"
    allowed = frozenset({"*.slack.com", "127.0.0.1"})
    assert rules.check_url("https://hooks.slack.com/services/T/B/X", allowed)
    assert rules.check_url("http://127.0.0.1:8080/x", allowed)
    with pytest.raises(InvalidInput, match=r"evil\.example\.com is not allowed"):
        rules.check_url("https://evil.example.com/x", allowed)


def test_backoff_doubles_up_to_an_hour_and_covers_a_ten_minute_outage():
    base = dt.timedelta(seconds=30)
    waits = [rules.backoff(n, base).total_seconds() for n in range(1, 9)]
    assert waits[:4] == [30, 60, 120, 240]
    assert waits[-1] == 3600
    assert sum(waits[:-1]) > 10 * 60  # the attempts span more than the outage


def test_signature_is_the_hmac_of_the_exact_body():
    body = b'{"a":1}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert rules.signature("s3cret", body) == f"sha256={expected}"


# -- through the store and a real receiver ---------------------------------------------------


def test_only_a_tenant_admin_subscribes_and_the_secret_is_shown_once(engine, tenant, settings):
    with pytest.raises(Forbidden, match="tenant_admin"):
        notifications.subscribe(
            UnitOfWork(engine),
            person(tenant, "sam", "steward"),
            "https://x.example/h",
            None,
            None,
            settings,
        )
    with pytest.raises(InvalidInput) as refused:
        subscribe(engine, tenant, "https://x.example/h", settings, events=["bad pattern!"])
    assert refused.value.field == "events"
    with pytest.raises(InvalidInput) as refused:
        subscribe(engine, tenant, "https://x.example/h", settings, min_tier="tier9")
    assert refused.value.field == "min_tier"
    secret, subscription = subscribe(engine, tenant, "https://x.example/h", settings)
    assert len(secret) >= 32 and subscription.events == ("quality.incident.*",)
    [listed] = notifications.list_subscriptions(UnitOfWork(engine), admin(tenant))
    assert "secret" not in listed.public() and listed.id == subscription.id
    assert notifications.list_subscriptions(UnitOfWork(engine), admin(uuid.uuid4())) == []
    with pytest.raises(NotFound):
        notifications.unsubscribe(UnitOfWork(engine), admin(uuid.uuid4()), subscription.id)
    notifications.unsubscribe(UnitOfWork(engine), admin(tenant), subscription.id)
    assert notifications.list_subscriptions(UnitOfWork(engine), admin(tenant)) == []


def test_one_signed_message_per_run_and_none_for_a_profile_that_changes_nothing(
    engine, tenant, settings, receiver
):
    secret, _ = subscribe(engine, tenant, receiver.url, settings)
    save(engine, tenant, 95.0, "run-0")  # passes: no incident, no message
    assert tick(engine, settings).delivered == 0 and receiver.received == []
    save(engine, tenant, 40.0, "run-1")
    save(engine, tenant, 30.0, "run-1", key=OTHER)
    report = tick(engine, settings)
    assert report.delivered == 1
    [message] = receiver.received
    assert message.headers["X-Mdstudio-Signature"] == rules.signature(secret, message.body)
    body = json.loads(message.body)
    assert message.headers["X-Mdstudio-Delivery"] == body["delivery_id"]
    assert [e["entity_key"] for e in body["events"]] == [KEY, OTHER]
    assert {e["type"] for e in body["events"]} == {"quality.incident.opened"}
    assert KEY in body["text"] and "critical" in body["text"] and "minimum 80" in body["text"]
    assert tick(engine, settings).delivered == 0 and len(receiver.received) == 1  # once
    [delivery] = deliveries(engine, tenant, "delivered")
    assert delivery.attempts == 1 and delivery.group_key == "run:run-1"
    with engine.connect() as connection:
        cursor = connection.execute(
            sa.select(tables.consumer_cursors.c.last_event_id).where(
                tables.consumer_cursors.c.consumer == "notification_sensor"
            )
        ).scalar()
        last_event = connection.execute(sa.select(sa.func.max(tables.events.c.id))).scalar()
    assert cursor == last_event


def test_a_run_in_progress_is_held_back_and_its_late_events_join_the_message(
    engine, tenant, settings, receiver
):
    subscribe(engine, tenant, receiver.url, settings)
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, settings, held=lambda group: group == "run:run-1").held == 1
    save(engine, tenant, 30.0, "run-1", key=OTHER)
    assert tick(engine, settings).delivered == 1
    [message] = receiver.received
    assert len(json.loads(message.body)["events"]) == 2


def test_min_tier_and_patterns_filter(engine, tenant, settings, receiver):
    subscribe(engine, tenant, receiver.url, settings, min_tier="tier1")
    save(engine, tenant, 10.0, "run-1", key="sales.orders.region", tier=Tier.TIER2)
    assert tick(engine, settings).delivered == 0
    everything = Receiver().start()
    try:
        subscribe(engine, tenant, everything.url, settings, events=["metadata.profile.*"])
        save(engine, tenant, 99.0, "run-2")
        assert tick(engine, settings).delivered == 1
        [message] = everything.received
        assert [e["type"] for e in json.loads(message.body)["events"]] == [
            "metadata.profile.completed"
        ]
    finally:
        everything.stop()


def test_a_receiver_that_is_down_misses_nothing_then_a_dead_delivery_is_redelivered(
    engine, tenant, monkeypatch, receiver, caplog
):
    monkeypatch.setenv("MDSTUDIO_NOTIFY_BACKOFF_SECONDS", "0.001")
    monkeypatch.setenv("MDSTUDIO_NOTIFY_MAX_ATTEMPTS", "3")
    settings = Settings.from_env()
    subscribe(engine, tenant, receiver.url, settings)
    receiver.status, receiver.answer = 503, b"<html>" + b"busy " * 200 + b"</html>"
    save(engine, tenant, 40.0, "run-1")
    caplog.set_level(logging.DEBUG)
    assert tick(engine, settings).failed == 1
    [failed] = deliveries(engine, tenant, "failed")
    assert failed.attempts == 1 and failed.last_status_code == 503
    assert failed.last_error.startswith("HTTP 503") and len(failed.last_error) <= 220
    assert failed.next_attempt_at > failed.created_at
    time.sleep(0.01)
    tick(engine, settings)
    time.sleep(0.01)
    assert tick(engine, settings).dead == 1
    [dead] = deliveries(engine, tenant, "dead")
    assert dead.attempts == 3
    assert tick(engine, settings) == notifications.SendReport()  # dead stays dead
    assert "secret-path-token" not in caplog.text and "127.0.0.1" in caplog.text
    assert "secret-path-token" not in (dead.last_error or "")
    receiver.status = 204
    notifications.redeliver(UnitOfWork(engine), admin(tenant), dead.id)
    assert tick(engine, settings).delivered == 1
    ids = {m.headers["X-Mdstudio-Delivery"] for m in receiver.received}
    assert ids == {str(dead.id)} and len(receiver.received) == 4  # one id: idempotency key
    with pytest.raises(NotFound):
        notifications.redeliver(UnitOfWork(engine), admin(uuid.uuid4()), dead.id)


def test_an_unreachable_receiver_fails_with_the_host_only(engine, tenant, settings):
    subscribe(engine, tenant, "http://127.0.0.1:1/hooks/secret-path-token", settings)
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, settings).failed == 1
    [failed] = deliveries(engine, tenant, "failed")
    assert failed.last_status_code is None and "127.0.0.1" in failed.last_error
    assert "secret-path-token" not in failed.last_error


def test_collecting_twice_at_once_creates_each_delivery_once(engine, tenant, settings, receiver):
    import threading

    subscribe(engine, tenant, receiver.url, settings)
    for n in range(5):
        save(engine, tenant, 40.0 if n % 2 == 0 else 95.0, f"run-{n}")
    barrier = threading.Barrier(3)

    def collect():
        barrier.wait()
        notifications.collect(UnitOfWork(engine), 1000)

    threads = [threading.Thread(target=collect) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    groups = [d.group_key for d in deliveries(engine, tenant)]
    assert sorted(groups) == [f"run:run-{n}" for n in range(5)]  # opened, resolved, ... once


# -- the CLI and the HTTP API --------------------------------------------------------------


def test_the_cli(store_url, engine, tenant, monkeypatch, receiver):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_TENANT", str(tenant))
    as_admin = ["--user", "ada", "--role", "tenant_admin"]
    refused = run_cli(
        ["notifications", "subscribe", "--url", receiver.url, "--user", "sam", "--role", "steward"]
    )
    assert refused.exit_code == 3
    bad = run_cli(["notifications", "subscribe", "--url", "ftp://x/y", *as_admin])
    assert bad.exit_code == 2 and "url" in bad.stderr
    made = run_cli(
        [
            "notifications",
            "subscribe",
            "--url",
            receiver.url,
            "--events",
            "quality.incident.*,metadata.profile.failed",
            "--min-tier",
            "tier2",
            *as_admin,
            "--json",
        ]
    )
    assert made.exit_code == 0, made.stderr
    assert made.json["secret"] and made.json["events"] == [
        "quality.incident.*",
        "metadata.profile.failed",
    ]
    human = run_cli(["notifications", "subscribe", "--url", receiver.url, *as_admin])
    assert "secret:" in human.stdout and "only this once" in human.stderr
    listed = run_cli(["notifications", "list", *as_admin, "--json"]).json
    assert len(listed) == 2 and all("secret" not in s for s in listed)
    assert run_cli(["notifications", "unsubscribe", listed[1]["id"], *as_admin]).exit_code == 0
    save(engine, tenant, 40.0, "run-1")
    tick(engine, Settings.from_env())
    [delivered] = run_cli(
        ["notifications", "deliveries", "--status", "delivered", *as_admin, "--json"]
    ).json
    assert delivered["attempts"] == 1 and "secret" not in json.dumps(delivered)
    again = run_cli(["notifications", "redeliver", delivered["id"], *as_admin, "--json"])
    assert again.exit_code == 0 and again.json["status"] == "pending"
    assert run_cli(["notifications", "redeliver", str(uuid.uuid4()), *as_admin]).exit_code == 4


def test_the_http_api(engine, tenant, monkeypatch, receiver):
    monkeypatch.setenv("MDSTUDIO_TRUSTED_HEADER_AUTH", "1")
    client = TestClient(create_app(Settings.from_env(), engine))
    headers = {"x-tenant-id": str(tenant), "x-user-id": "ada", "x-role": "tenant_admin"}
    steward = {**headers, "x-role": "steward"}
    assert (
        client.post("/notifications", json={"url": receiver.url}, headers=steward).status_code
        == 403
    )
    bad = client.post("/notifications", json={"url": "gopher://x"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["field"] == "url"
    made = client.post(
        "/notifications", json={"url": receiver.url, "min_tier": "tier1"}, headers=headers
    )
    assert made.status_code == 201 and made.json()["secret"]
    [listed] = client.get("/notifications", headers=headers).json()["items"]
    assert listed["id"] == made.json()["id"] and listed.get("secret") is None
    save(engine, tenant, 40.0, "run-1")
    tick(engine, Settings.from_env())
    [delivery] = client.get("/notifications/deliveries?status=delivered", headers=headers).json()[
        "items"
    ]
    redelivered = client.post(
        f"/notifications/deliveries/{delivery['id']}/redeliver", headers=headers
    )
    assert redelivered.status_code == 200 and redelivered.json()["status"] == "pending"
    other = {**headers, "x-tenant-id": str(uuid.uuid4())}
    assert (
        client.post(
            f"/notifications/deliveries/{delivery['id']}/redeliver", headers=other
        ).status_code
        == 404
    )
    assert client.delete(f"/notifications/{listed['id']}", headers=other).status_code == 404
    assert client.delete(f"/notifications/{listed['id']}", headers=headers).status_code == 200
    assert client.get("/notifications", headers=headers).json()["items"] == []
