"""Webhook notifications through the store (SQLite and PostgreSQL) and a real receiver on
loopback: one message per run and subscription, signed, retried with backoff, dead after the
last attempt, redeliverable; and the CLI and HTTP faces. The receiver is on loopback, so these
tests set `MDSTUDIO_NOTIFY_ALLOW_PRIVATE=1` (tests/store/test_webhook_destinations.py: the rule
on)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
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
from mdstudio_core.domain.notifications import Delivery, DeliveryStatus
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import notifications
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.store.test_incidents import save
from tests.support.cli_helpers import run_cli
from tests.support.factories import person
from tests.support.webhook_receiver import Receiver

KEY = "finance.revenue.gross_amount"
OTHER = "finance.revenue.net_amount"
HOUR = dt.timedelta(hours=1)


@pytest.fixture(autouse=True)
def local_receivers_allowed(monkeypatch):
    monkeypatch.setenv("MDSTUDIO_NOTIFY_ALLOW_PRIVATE", "1")


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
    notifications.collect(UnitOfWork(engine), 1000, settings)
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
    allowed = frozenset({"*.slack.com", "127.0.0.1:8080"})
    assert rules.check_url("https://hooks.slack.com/services/T/B/X", allowed)
    assert rules.check_url("http://127.0.0.1:8080/x", allowed)
    with pytest.raises(InvalidInput, match=r"evil\.example\.com port 443 is not allowed"):
        rules.check_url("https://evil.example.com/x", allowed)


def test_backoff_doubles_up_to_an_hour_and_covers_a_ten_minute_outage():
    base = dt.timedelta(seconds=30)
    waits = [rules.backoff(n, base).total_seconds() for n in range(1, 9)]
    assert waits[:4] == [30, 60, 120, 240]
    assert waits[-1] == 3600
    assert sum(waits[:-1]) > 10 * 60  # the attempts span more than the outage


def test_signature_is_the_hmac_of_the_timestamp_a_dot_and_the_exact_body():
    body = b'{"a":1}'
    expected = hmac.new(b"s3cret", b'1767323045.{"a":1}', hashlib.sha256).hexdigest()
    assert rules.signature("s3cret", 1767323045, body) == f"sha256={expected}"


# -- through the store and a real receiver ---------------------------------------------------


def test_only_a_tenant_admin_subscribes_and_the_secret_is_shown_once(engine, uow, tenant, settings):
    with pytest.raises(Forbidden, match="tenant_admin"):
        notifications.subscribe(
            uow,
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
    [listed] = notifications.list_subscriptions(uow, admin(tenant))
    assert "secret" not in listed.public() and listed.id == subscription.id
    assert notifications.list_subscriptions(uow, admin(uuid.uuid4())) == []
    with pytest.raises(NotFound):
        notifications.unsubscribe(uow, admin(uuid.uuid4()), subscription.id)
    notifications.unsubscribe(uow, admin(tenant), subscription.id)
    assert notifications.list_subscriptions(uow, admin(tenant)) == []


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
    assert message.headers["X-Mdstudio-Signature"] == rules.signature(
        secret, int(message.headers["X-Mdstudio-Timestamp"]), message.body
    )
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
    engine, uow, tenant, monkeypatch, receiver, caplog
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
    assert failed.last_error == "HTTP 503"  # nothing of the answer
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
    notifications.redeliver(uow, admin(tenant), dead.id)
    assert tick(engine, settings).delivered == 1
    ids = {m.headers["X-Mdstudio-Delivery"] for m in receiver.received}
    assert ids == {str(dead.id)} and len(receiver.received) == 4  # one id: idempotency key
    with pytest.raises(NotFound):
        notifications.redeliver(uow, admin(uuid.uuid4()), dead.id)


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
        notifications.collect(UnitOfWork(engine), 1000, settings)

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


# -- what the services say, and how a tick treats each delivery -------------------------------

THIRD = "finance.revenue.tax_amount"


def now():
    return dt.datetime.now(dt.UTC)


def add_deliveries(engine, subscription, groups, status=DeliveryStatus.PENDING, start=None):
    """Deliveries written straight to the store, one a second from `start`."""
    start = start or now()
    with UnitOfWork(engine) as uow:
        for n, group in enumerate(groups):
            at = start + dt.timedelta(seconds=n)
            delivery = Delivery(
                id=uuid.uuid4(),
                tenant_id=subscription.tenant_id,
                subscription_id=subscription.id,
                group_key=group,
                events=[],
                status=status,
                attempts=0,
                next_attempt_at=at,
                created_at=at,
            )
            uow.notifications.add_delivery(delivery)
        uow.commit()


REFUSALS = {
    "min_tier": (
        lambda uow, who, settings: notifications.subscribe(
            uow, who, "https://x.example/h", None, "tier9", settings
        ),
        "min_tier: must be tier1, tier2 or tier3",
    ),
    "status": (
        lambda uow, who, settings: notifications.list_deliveries(uow, who, "lost"),
        "status: not a delivery status",
    ),
    "offset": (
        lambda uow, who, settings: notifications.list_deliveries(uow, who, offset=-1),
        "offset: must not be negative",
    ),
    "delivery_id": (
        lambda uow, who, settings: notifications.redeliver(uow, who, "nope"),
        "delivery_id: not a valid delivery id (a UUID)",
    ),
    "subscription_id": (
        lambda uow, who, settings: notifications.unsubscribe(uow, who, "nope"),
        "subscription_id: not a valid subscription id (a UUID)",
    ),
}


@pytest.mark.parametrize("field", list(REFUSALS))
def test_a_refusal_names_the_field_and_says_why(uow, tenant, settings, field):
    """What the CLI and the API show an admin who typed something wrong."""
    call, text = REFUSALS[field]
    with pytest.raises(InvalidInput) as refused:
        call(uow, admin(tenant), settings)
    assert refused.value.field == field and str(refused.value) == text


def test_an_unknown_id_is_not_found_by_name(uow, tenant):
    missing = uuid.uuid4()
    with pytest.raises(NotFound) as absent:
        notifications.redeliver(uow, admin(tenant), missing)
    assert str(absent.value) == f"delivery {missing} not found"
    with pytest.raises(NotFound) as absent:
        notifications.unsubscribe(uow, admin(tenant), missing)
    assert str(absent.value) == f"subscription {missing} not found"


def test_the_secret_has_256_bits_and_the_operator_allow_list_applies(
    engine, tenant, monkeypatch, receiver
):
    monkeypatch.setenv("MDSTUDIO_NOTIFY_ALLOWED_HOSTS", "*.slack.com")
    settings = Settings.from_env()
    with pytest.raises(InvalidInput, match=r"host 127\.0\.0\.1 port \d+ is not allowed"):
        subscribe(engine, tenant, receiver.url, settings)
    secret, _ = subscribe(engine, tenant, "https://hooks.slack.com/services/T/B/X", settings)
    assert len(secret) == 43  # 32 random bytes, URL-safe base64


def test_unsubscribing_returns_when_and_a_second_time_is_not_found(engine, uow, tenant, settings):
    _, subscription = subscribe(engine, tenant, "https://x.example/h", settings)
    before = now()
    ended = notifications.unsubscribe(uow, admin(tenant), subscription.id)
    assert ended.id == subscription.id and before <= ended.unsubscribed_at <= now()
    with pytest.raises(NotFound):
        notifications.unsubscribe(uow, admin(tenant), subscription.id)


def test_deliveries_are_listed_newest_first_by_status_and_page(engine, tenant, settings):
    _, subscription = subscribe(engine, tenant, "https://x.example/h", settings)
    add_deliveries(engine, subscription, ["a", "b", "c"], start=now() - HOUR)
    add_deliveries(engine, subscription, ["d"], DeliveryStatus.DEAD)
    who, uow = admin(tenant), lambda: UnitOfWork(engine)

    def groups(*args, **kwargs):
        return [d.group_key for d in notifications.list_deliveries(uow(), who, *args, **kwargs)]

    assert groups() == ["d", "c", "b", "a"]
    assert groups("pending") == ["c", "b", "a"] and groups("dead") == ["d"]
    assert groups(limit=2) == ["d", "c"]
    assert groups(offset=1) == ["c", "b", "a"]
    assert groups("pending", limit=1, offset=1) == ["b"]


def test_collect_reads_at_most_max_events_and_skips_tenants_without_subscriptions(
    engine, uow, tenant, settings
):
    save(engine, tenant, 40.0, "run-1")  # nobody in this tenant listens
    _, subscription = subscribe(engine, uuid.uuid4(), "https://x.example/h", settings)
    read = notifications.collect(uow, 1, settings).read
    assert read == 1 and notifications.collect(uow, 1000, settings).read > 0
    assert notifications.collect(uow, 1000, settings).read == 0  # nothing new
    assert deliveries(engine, subscription.tenant_id) == []


def test_a_late_event_of_a_sent_run_gets_its_own_delivery_held_like_its_run(
    engine, tenant, settings, receiver
):
    subscribe(engine, tenant, receiver.url, settings)
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, settings).delivered == 1
    save(engine, tenant, 30.0, "run-1", key=OTHER)
    in_progress = tick(engine, settings, held=lambda group: group == "run:run-1")
    assert in_progress == notifications.SendReport(held=1)
    [late, sent] = deliveries(engine, tenant)
    [event] = late.events
    assert late.group_key == f"run:run-1/{event['id']}" and sent.group_key == "run:run-1"
    assert tick(engine, settings).delivered == 1 and len(receiver.received) == 2


def test_a_tick_counts_every_outcome_and_goes_on_past_held_and_orphaned_deliveries(
    engine, uow, tenant, settings, receiver
):
    _, gone = subscribe(engine, tenant, receiver.url, settings)
    save(engine, tenant, 40.0, "run-0")
    notifications.collect(uow, 1000, settings)  # gone's delivery is due first
    notifications.unsubscribe(uow, admin(tenant), gone.id)
    subscribe(engine, tenant, receiver.url, settings)
    for run, key in (("run-1", OTHER), ("run-2", THIRD), ("run-3", "finance.revenue.fee")):
        save(engine, tenant, 40.0, run, key=key)
        notifications.collect(uow, 1000, settings)
    every_run = tick(engine, settings, held=lambda group: True)
    assert every_run == notifications.SendReport(held=3)
    report = tick(engine, settings, held=lambda group: group == "run:run-1")
    assert report == notifications.SendReport(delivered=2, held=1)
    assert len(receiver.received) == 2
    [orphan] = [d for d in deliveries(engine, tenant) if d.subscription_id == gone.id]
    assert orphan.status == "pending" and orphan.attempts == 0  # it stays, visible


def test_a_tick_sends_at_most_its_limit_200_by_default(engine, tenant, settings):
    _, subscription = subscribe(engine, tenant, "https://x.example/h", settings)
    groups = [f"run:{n}" for n in range(201)]
    add_deliveries(engine, subscription, groups, start=now() - dt.timedelta(minutes=5))
    send = notifications.send_due
    held = {"held": lambda group: True}
    assert send(lambda: UnitOfWork(engine), settings, **held).held == 200
    assert send(lambda: UnitOfWork(engine), settings, limit=5, **held).held == 5


def test_a_tick_out_of_time_stops_and_reports_what_it_did(engine, tenant, settings, receiver):
    subscribe(engine, tenant, receiver.url, settings)
    save(engine, tenant, 40.0, "run-1")
    assert tick(engine, settings, budget_seconds=-1) == notifications.SendReport()
    assert receiver.received == []


def test_a_retry_waits_its_backoff_and_a_redelivery_starts_afresh(
    engine, uow, tenant, monkeypatch, receiver
):
    """The failure's status and error give way to the success's; a redelivery is due now
    with every attempt back."""
    monkeypatch.setenv("MDSTUDIO_NOTIFY_BACKOFF_SECONDS", "30")
    settings = Settings.from_env()
    subscribe(engine, tenant, receiver.url, settings)
    receiver.status = 503
    save(engine, tenant, 40.0, "run-1")
    before = now()
    assert tick(engine, settings).failed == 1
    [failed] = deliveries(engine, tenant)
    assert failed.next_attempt_at >= before + dt.timedelta(seconds=30)
    assert tick(engine, settings) == notifications.SendReport()  # not due yet
    receiver.status = 200
    before = now()
    again = notifications.redeliver(uow, admin(tenant), failed.id)
    assert again.status == "pending" and again.attempts == 0
    assert before <= again.next_attempt_at <= now()
    assert tick(engine, settings).delivered == 1
    [delivered] = deliveries(engine, tenant)
    assert delivered.attempts == 1 and delivered.last_status_code == 200
    assert delivered.last_error is None and before <= delivered.delivered_at <= now()


def test_a_receiver_slower_than_the_timeout_fails_the_attempt(
    engine, tenant, monkeypatch, receiver
):
    monkeypatch.setenv("MDSTUDIO_NOTIFY_TIMEOUT_SECONDS", "0.2")
    settings = Settings.from_env()
    answer = threading.Event()
    receiver.on_post = lambda: answer.wait(10)
    subscribe(engine, tenant, receiver.url, settings)
    save(engine, tenant, 40.0, "run-1")
    try:
        assert tick(engine, settings).failed == 1
    finally:
        answer.set()
    [failed] = deliveries(engine, tenant)
    assert failed.last_error == "ReadTimeout reaching 127.0.0.1"


def test_two_senders_record_one_attempt_once(engine, tenant, settings, receiver):
    """Another sender takes the same due delivery while this one's POST is in flight: the
    first to finish records the attempt; the other's record is refused and not counted."""
    subscribe(engine, tenant, receiver.url, settings)
    save(engine, tenant, 40.0, "run-1")
    notifications.collect(UnitOfWork(engine), 1000, settings)
    raced, other = threading.Event(), []

    def race():
        if not raced.is_set():
            raced.set()
            other.append(notifications.send_due(lambda: UnitOfWork(engine), settings))

    receiver.on_post = race
    assert notifications.send_due(lambda: UnitOfWork(engine), settings) == (
        notifications.SendReport()
    )
    assert other == [notifications.SendReport(delivered=1)]
    [delivery] = deliveries(engine, tenant)
    assert delivery.attempts == 1 and len(receiver.received) == 2
