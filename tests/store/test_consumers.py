"""The outbox's consumers on the store (SQLite and PostgreSQL): registration, lag, replays
(exactly once per replay, across a killed process), failing events and dead letters, through
the CLI an operator uses and the pass a consumer makes."""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.config import Settings
from mdstudio_core.domain.consumers import ConsumerCursor, DeadLetterStatus
from mdstudio_core.domain.errors import StoreTimeout
from mdstudio_core.domain.events import DEPLOYMENT_TENANT, Event, NewEvent
from mdstudio_core.service_layer import consumers, notifications
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.cli_helpers import CliResult, run_cli
from tests.support.factories import make_event, person

ROOT = Path(__file__).resolve().parents[2]
KEY = "finance.revenue.gross_amount"
SECRET = "S3cretPassw0rd"


@pytest.fixture
def store(store_url, engine, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_USER", "olga")
    for name in ("MDSTUDIO_TENANT", "MDSTUDIO_ROLE", "MDSTUDIO_CONSUMER_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    return engine


def incident_event(tenant: uuid.UUID, run: str, tier: str = "tier1", **payload) -> NewEvent:
    payload = {"canonical_key": KEY, "tier": tier, "run_id": run, **payload}
    return make_event("quality.incident.opened", tenant, KEY, payload, actor="profiler")


def append(engine, events: list[NewEvent]) -> list[Event]:
    with UnitOfWork(engine) as uow:
        written = uow.events.append(events)
        uow.commit()
    return written


def subscribe(engine, tenant, min_tier=None):
    return notifications.subscribe(
        UnitOfWork(engine),
        person(tenant, "ada", "tenant_admin"),
        "https://hooks.example/x",
        None,
        min_tier,
        Settings.from_env(),
    )[1]


def collect(engine, max_events=1000):
    return notifications.collect(UnitOfWork(engine), max_events, Settings.from_env())


def deliveries(engine):
    column = tables.notification_deliveries.c
    with engine.connect() as connection:
        return connection.execute(
            sa.select(column.group_key, column.events).order_by(column.created_at)
        ).all()


def cursor(engine, name="notification_sensor") -> ConsumerCursor:
    with UnitOfWork(engine) as uow:
        return uow.cursors.get(name)


def replay_cli(first: Event, last: Event, *flags: str) -> CliResult:
    """`events replay` of the notification sensor from one event to another, as JSON."""
    return run_cli(
        [
            "events",
            "replay",
            "--consumer",
            "notification_sensor",
            "--from",
            str(first.id),
            "--to",
            str(last.id),
            *flags,
            "--json",
        ]
    )


def consumers_listed(args=()):
    result = run_cli(["events", "consumers", "--json", *args])
    assert result.exit_code == 0, result.stderr
    return {c["name"]: c for c in result.json}


# -- registration and lag -----------------------------------------------------------------------


def test_consumers_are_listed_with_position_lag_and_dead_letters_without_a_tenant(store, tenant):
    hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    written = append(
        store,
        [
            NewEvent(**{**incident_event(tenant, f"r{i}").__dict__, "occurred_at": hour_ago})
            for i in range(3)
        ],
    )
    listed = consumers_listed()
    assert set(listed) == {"approval_sensor", "notification_sensor"}
    sensor = listed["notification_sensor"]
    assert (sensor["position"], sensor["lag_events"], sensor["dead_letters"]) == (0, 3, 0)
    assert 3500 < sensor["lag_seconds"] < 3700  # the oldest event it has not handled

    registered = run_cli(["events", "consumers", "register", "audit.feed", "--json"])
    assert registered.exit_code == 0, registered.stderr
    assert registered.json == {"name": "audit.feed", "position": written[-1].id}  # the head
    late = run_cli(["events", "consumers", "register", "late.feed", "--from", str(written[1].id)])
    assert late.exit_code == 0, late.stderr
    listed = consumers_listed()
    assert (listed["audit.feed"]["lag_events"], listed["audit.feed"]["lag_seconds"]) == (0, 0.0)
    assert (listed["late.feed"]["position"], listed["late.feed"]["lag_events"]) == (
        written[0].id,
        2,
    )
    acked = run_cli(["events", "consumers", "ack", "late.feed", str(written[2].id), "--json"])
    assert acked.json == {"name": "late.feed", "position": written[2].id}
    human = run_cli(["events", "consumers"])
    assert human.stdout.split("\n")[0].split() == [
        "NAME",
        "POSITION",
        "LAG_EVENTS",
        "LAG_SECONDS",
        "DEAD_LETTERS",
    ]
    assert run_cli(["events", "consumers", "unregister", "late.feed"]).exit_code == 0
    assert "late.feed" not in consumers_listed()


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["register", "audit.feed"], 5, "registered already"),
        (["register", "approval_sensor"], 5, "built-in"),
        (["register", "Bad Name"], 2, "name:"),
        (["register", "other", "--from", "0"], 2, "from:"),
        (["register", "other", "--from", "99"], 2, "from:"),
        (["ack", "audit.feed", "1"], 2, "event_id:"),
        (["ack", "audit.feed", "99"], 2, "event_id:"),
        (["ack", "ghost", "1"], 4, "ghost not found"),
        (["ack", "notification_sensor", "1"], 5, "keeps its own cursor"),
        (["unregister", "ghost"], 4, "not found"),
        (["unregister", "approval_sensor"], 5, "built-in"),
    ],
)
def test_wrong_consumer_commands_are_refused_naming_why(store, tenant, args, code, says):
    append(store, [incident_event(tenant, f"r{i}") for i in range(3)])
    assert run_cli(["events", "consumers", "register", "audit.feed"]).exit_code == 0
    before = {name: c["position"] for name, c in consumers_listed().items()}
    result = run_cli(["events", "consumers", *args])
    assert result.exit_code == code, result.stderr
    assert says in result.stderr
    assert {name: c["position"] for name, c in consumers_listed().items()} == before


# -- replays ---------------------------------------------------------------------------------


def test_a_replay_hands_a_range_again_once_per_replay_and_then_goes_on(store, uow, tenant):
    subscribe(store, tenant)
    written = append(store, [incident_event(tenant, f"run-{i}") for i in range(4)])
    collect(store)
    assert [g for g, _ in deliveries(store)] == [f"run:run-{i}" for i in range(4)]

    dry = replay_cli(written[1], written[2], "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert [(d["group_key"], d["event_ids"]) for d in dry.json["deliveries"]] == [
        ("replay:<id>:run:run-1", [written[1].id]),
        ("replay:<id>:run:run-2", [written[2].id]),
    ]
    assert len(deliveries(store)) == 4 and cursor(store).generation == 0  # nothing changed

    replayed = replay_cli(written[1], written[2])
    assert replayed.exit_code == 0, replayed.stderr
    replay_id = replayed.json["replay_id"]
    assert replayed.json == {
        "replay_id": replay_id,
        "consumer": "notification_sensor",
        "from_event_id": written[1].id,
        "to_event_id": written[2].id,
        "requested_by": "olga",
    }
    with uow:
        [recorded] = [e for e in uow.events.list(after=written[-1].id)]
    assert (recorded.type, recorded.tenant_id, recorded.actor, recorded.entity_key) == (
        "events.replayed",
        DEPLOYMENT_TENANT,
        "olga",
        "notification_sensor",
    )
    moved = cursor(store)
    assert (moved.position, moved.generation, moved.replay_id) == (written[0].id, 1, replay_id)
    assert consumers_listed()["notification_sensor"]["replaying"] == {
        "replay_id": replay_id,
        "through": written[2].id,
        "resume_after": recorded.id - 1,
    }

    first_pass = collect(store)
    assert first_pass.read == 2  # the range alone, not the events after it
    assert [g for g, _ in deliveries(store)[4:]] == [
        f"replay:{replay_id}:run:run-1",
        f"replay:{replay_id}:run:run-2",
    ]
    after = cursor(store)
    assert (after.position, after.replay_id) == (recorded.id - 1, None)  # back where it was
    collect(store)
    assert len(deliveries(store)) == 6 and cursor(store).position == recorded.id

    again = replay_cli(written[1], written[1])
    collect(store)
    assert [g for g, _ in deliveries(store)[6:]] == [
        f"replay:{again.json['replay_id']}:run:run-1"  # a new replay delivers again
    ]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--consumer", "ghost", "--from", "1"], 4, "consumer ghost not found"),
        (["--consumer", "notification_sensor", "--from", "0"], 2, "from:"),
        (["--consumer", "notification_sensor", "--from", "3"], 2, "has not handled events up"),
        (["--consumer", "notification_sensor", "--from", "2", "--to", "1"], 2, "to:"),
    ],
)
def test_a_replay_of_what_a_consumer_has_not_handled_is_refused(store, tenant, args, code, says):
    written = append(store, [incident_event(tenant, f"r{i}") for i in range(3)])
    collect(store, max_events=1)
    assert cursor(store).position == written[0].id
    result = run_cli(["events", "replay", *args])
    assert result.exit_code == code, result.stderr
    assert says in result.stderr
    assert cursor(store).generation == 0


def test_a_replay_killed_at_any_moment_delivers_each_event_once(store, uow, store_url, tenant):
    """The worker collects the replay in passes of 50 events and is killed at random moments,
    then started again. After every kill, the replay's deliveries are exactly the events its
    cursor has passed: the deliveries and the cursor commit together or not at all."""
    subscribe(store, tenant)
    count = 1500
    written = append(store, [incident_event(tenant, f"run-{i}") for i in range(count)])
    collect(store, max_events=count)
    event = consumers.replay(
        uow,
        "olga",
        "notification_sensor",
        written[0].id,
        None,
        dt.datetime.now(dt.UTC),
    )
    prefix = f"replay:{event.id}:"
    env = {
        **os.environ,
        "MDSTUDIO_DATABASE_URL": store_url,
        "PYTHONPATH": str(ROOT),
        "PASS_PAUSE_SECONDS": "0.08",
    }
    started = time.monotonic()  # how long a worker takes to start, on this machine now
    subprocess.run(
        [sys.executable, "-c", "import tests.support.consumer_worker"], env=env, check=True
    )
    start_up = time.monotonic() - started
    rng = random.Random(20)
    kills = interrupted = 0
    position = written[0].id - 1
    while cursor(store).replay_id is not None:
        worker = subprocess.Popen([sys.executable, "-m", "tests.support.consumer_worker"], env=env)
        time.sleep(start_up + rng.uniform(0.05, 1.2))
        killed = worker.poll() is None
        if killed:
            worker.send_signal(signal.SIGKILL)
            kills += 1
        worker.wait(60)
        before, position = position, cursor(store).position
        replayed = [events for group, events in deliveries(store) if group.startswith(prefix)]
        handled = sorted(e["id"] for events in replayed for e in events)
        if cursor(store).replay_id is not None:
            assert handled == [e.id for e in written if e.id <= position]
            interrupted += killed and position > before
        assert kills < 60
    assert interrupted >= 1  # killed at least once half-way through the range
    replayed = [events for group, events in deliveries(store) if group.startswith(prefix)]
    assert sorted(e["id"] for events in replayed for e in events) == [e.id for e in written]
    assert len(replayed) == count  # one delivery per run's group, none twice


# -- failing events and dead letters ------------------------------------------------------------


def test_an_event_that_keeps_failing_becomes_a_dead_letter_and_the_stream_goes_on(
    store, uow, tenant, monkeypatch
):
    monkeypatch.setenv("MDSTUDIO_CONSUMER_MAX_ATTEMPTS", "3")
    strict = subscribe(store, tenant, min_tier="tier2")  # reads each event's tier
    poison_tier = f"postgresql://ops:{SECRET}@db.internal/x"
    [good, poison, later] = append(
        store,
        [
            incident_event(tenant, "run-1"),
            incident_event(tenant, "run-2", tier=poison_tier),
            incident_event(tenant, "run-3"),
        ],
    )
    for attempt in (1, 2):
        failed = collect(store)
        assert (failed.handled, failed.failing, failed.dead_lettered) == (
            1 if attempt == 1 else 0,
            poison.id,
            0,
        )
        stuck = consumers_listed()["notification_sensor"]
        assert stuck["position"] == good.id
        assert stuck["failing"]["attempts"] == attempt
    assert SECRET not in stuck["failing"]["error"] and "***" in stuck["failing"]["error"]
    last = collect(store)
    assert (last.handled, last.dead_lettered, last.failing) == (1, 1, None)
    assert [g for g, _ in deliveries(store)] == ["run:run-1", "run:run-3"]  # the stream went on
    sensor = consumers_listed()["notification_sensor"]
    assert (sensor["position"], sensor["dead_letters"], sensor["failing"]) == (later.id, 1, None)

    listed = run_cli(["events", "dead-letters", "--consumer", "notification_sensor", "--json"])
    [letter] = listed.json
    assert (letter["event_id"], letter["event_type"], letter["attempts"], letter["status"]) == (
        poison.id,
        "quality.incident.opened",
        3,
        "dead",
    )
    assert letter["error"].startswith("ValueError: ") and SECRET not in letter["error"]
    assert run_cli(["events", "dead-letters", "--consumer", "approval_sensor", "--json"]).json == []

    # Handed back while its cause remains, it fails again and is dead again.
    retried = run_cli(["events", "dead-letters", "retry", str(letter["id"]), "--json"])
    assert retried.json["status"] == "retrying"
    assert run_cli(["events", "dead-letters", "retry", str(letter["id"])]).exit_code == 5
    assert collect(store).retried == 0
    with uow:
        again = uow.dead_letters.get(letter["id"])
    assert (again.status, again.attempts) == (DeadLetterStatus.DEAD, 4)
    # The cause gone (the subscription that read the tier), the retry delivers it, keyed so.
    notifications.unsubscribe(uow, person(tenant, "ada", "tenant_admin"), strict.id)
    subscribe(store, tenant)
    run_cli(["events", "dead-letters", "retry", str(letter["id"])])
    assert collect(store).retried == 1
    assert deliveries(store)[-1].group_key == f"retry:{letter['id']}:4:run:run-2"
    done = run_cli(["events", "dead-letters", "--status", "retried", "--json"]).json
    assert [(d["id"], d["resolved_by"]) for d in done] == [(letter["id"], "olga")]
    assert consumers_listed()["notification_sensor"]["dead_letters"] == 0


def test_a_dead_letter_is_discarded_on_the_record_with_a_reason(store, tenant, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_CONSUMER_MAX_ATTEMPTS", "1")
    subscribe(store, tenant, min_tier="tier2")
    append(store, [incident_event(tenant, "run-1", tier="tier9")])
    collect(store)
    [letter] = run_cli(["events", "dead-letters", "--json"]).json
    no_reason = run_cli(["events", "dead-letters", "discard", str(letter["id"]), "--reason", " "])
    assert no_reason.exit_code == 2 and "reason:" in no_reason.stderr
    missing = run_cli(["events", "dead-letters", "discard", "999", "--reason", "x"])
    assert missing.exit_code == 4
    dropped = run_cli(
        [
            "events",
            "dead-letters",
            "discard",
            str(letter["id"]),
            "--reason",
            "test data",
            "--user",
            "ivan",
            "--json",
        ]
    )
    assert dropped.exit_code == 0, dropped.stderr
    assert (dropped.json["status"], dropped.json["reason"], dropped.json["resolved_by"]) == (
        "discarded",
        "test data",
        "ivan",
    )
    assert run_cli(["events", "dead-letters", "--json"]).json == []
    assert run_cli(["events", "dead-letters", "retry", str(letter["id"])]).exit_code == 5
    assert consumers_listed()["notification_sensor"]["dead_letters"] == 0


def test_an_external_consumer_passes_in_savepoints_and_a_store_failure_counts_no_attempt(
    store, uow, tenant, monkeypatch
):
    """A consumer written with `consume`: an event's effects are all kept or all rolled back,
    and an environment failure (the store) stops the pass without blaming the event."""
    monkeypatch.setenv("MDSTUDIO_CONSUMER_MAX_ATTEMPTS", "2")
    settings = Settings.from_env()
    assert run_cli(["events", "consumers", "register", "tagger", "--from", "1"]).exit_code == 0
    written = append(store, [incident_event(tenant, f"run-{i}") for i in range(3)])
    outage = {"on": True}

    def tag(uow, event, key):
        uow.cursors.save(ConsumerCursor(f"seen.{event.id}", position=event.id))  # an effect
        if event.id == written[1].id:
            if outage["on"]:
                raise StoreTimeout("the store did not answer")
            raise RuntimeError("cannot tag this one")

    with pytest.raises(StoreTimeout):
        consumers.consume(uow, "tagger", tag, settings=settings, max_events=10)
    assert cursor(store, "tagger") == ConsumerCursor(
        "tagger", updated_at=cursor(store, "tagger").updated_at
    )
    outage["on"] = False
    first = consumers.consume(uow, "tagger", tag, settings=settings, max_events=10)
    assert (first.handled, first.failing) == (1, written[1].id)
    second = consumers.consume(uow, "tagger", tag, settings=settings, max_events=10)
    assert (second.handled, second.dead_lettered) == (1, 1)
    with uow:
        seen = {c.consumer for c in uow.cursors.all() if c.consumer.startswith("seen.")}
    assert seen == {f"seen.{written[0].id}", f"seen.{written[2].id}"}  # the failed one's undone
    assert consumers_listed()["tagger"]["dead_letters"] == 1


def test_dead_letters_are_a_metric(store, tenant, monkeypatch):
    from fastapi.testclient import TestClient

    from mdstudio_core.entrypoints.http import create_app

    monkeypatch.setenv("MDSTUDIO_CONSUMER_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("MDSTUDIO_METRICS_TOKEN", "t" * 32)
    subscribe(store, tenant, min_tier="tier2")
    append(store, [incident_event(tenant, "run-1", tier="tier9")])
    collect(store)
    with TestClient(create_app(Settings.from_env())) as client:
        text = client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 32}).text
    assert 'mdstudio_outbox_dead_letters{consumer="notification_sensor"} 1.0' in text
    assert 'mdstudio_outbox_dead_letters{consumer="approval_sensor"} 0.0' in text
