"""approval_sensor as a consumer of the outbox, on a real (temporary) Dagster instance and a
store on each backend: its cursor in the store, replays keyed so that each happens once per
replay (a tick evaluated again asks for the same runs), events it cannot read set aside as
dead letters, and letters handed back; and the `event_retention` schedule's run."""

from __future__ import annotations

import datetime as dt
import uuid

import dagster as dg
import orjson
import pytest

import mdstudio_pipelines.cli  # noqa: F401  (adds approval_sensor's dry run to the CLI)
from mdstudio_core.config import Settings
from mdstudio_core.domain.consumers import ConsumerCursor
from mdstudio_core.domain.events import DEPLOYMENT_TENANT, NewEvent
from mdstudio_core.domain.model import EntityType
from mdstudio_core.service_layer import consumers, notifications
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from mdstudio_pipelines.lib.partitions import CATALOG_ENTITIES, partition_key
from tests.pipelines.conftest import load_defs
from tests.support.cli_helpers import CliResult, run_cli
from tests.support.factories import make_event

KEY = "finance.revenue.gross_amount"


@pytest.fixture
def operator_env(env, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_USER", "olga")
    monkeypatch.setenv("MDSTUDIO_MIN_RERUN_HOURS", "0")  # a replay may profile again
    monkeypatch.delenv("MDSTUDIO_CONSUMER_MAX_ATTEMPTS", raising=False)
    return env


def store_cursor(env):
    with UnitOfWork(env.engine) as uow:
        return uow.cursors.get("approval_sensor")


def last_event_id(env) -> int:
    with UnitOfWork(env.engine) as uow:
        return uow.events.head()


def unreadable_due_event(tenant: uuid.UUID) -> NewEvent:
    """A `metadata.profile.due` without its reason (an emitter's bug): the sensor cannot plan
    it."""
    payload = {"canonical_key": KEY, "approval_id": str(uuid.uuid4())}
    return make_event("metadata.profile.due", tenant, KEY, payload, actor="bob")


def replay_cli(first_event: int, *args: str) -> CliResult:
    """`events replay` of approval_sensor from `first_event`."""
    return run_cli(
        ["events", "replay", "--consumer", "approval_sensor", "--from", str(first_event), *args]
    )


def test_a_replay_requests_the_runs_again_once_per_replay(operator_env):
    env = operator_env
    env.approve()
    [first] = env.tick().run_requests
    assert env.run(first).success
    assert env.tick().run_requests == []  # the profile's own events: nothing to run
    assert isinstance(env.tick(), dg.SkipReason)
    assert store_cursor(env).position == last_event_id(env)  # Dagster's, recorded by a tick
    first_event = int(first.run_key.split(":")[1].split("-")[0])

    dry = replay_cli(first_event, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    [planned] = dry.json["runs"]
    assert planned["run_key"] == "replay:<id>:" + first.run_key
    assert (planned["entities"], planned["tables"]) == ([KEY], ["demo.orders"])
    assert store_cursor(env).generation == 0  # a dry run changes nothing

    replay = replay_cli(first_event, "--json")
    assert replay.exit_code == 0, replay.stderr
    replay_id = replay.json["replay_id"]
    committed = env.cursor
    again = env.tick()
    [replayed] = again.run_requests
    assert replayed.run_key == f"replay:{replay_id}:{first.run_key}"
    assert replayed.run_config == first.run_config
    # The daemon died before committing that tick: evaluated again, it asks for the same run,
    # which Dagster does not launch twice.
    env.cursor = committed
    assert [r.run_key for r in env.tick().run_requests] == [replayed.run_key]
    assert orjson.loads(env.cursor)["generation"] == 1
    assert env.run(replayed).success
    # Past the range, back where it was: the next ticks ask for nothing more.
    after = env.tick()
    assert after.run_requests == []
    resumed = store_cursor(env)
    assert (resumed.replay_id, resumed.generation) == (None, 1)
    assert isinstance(env.tick(), dg.SkipReason)
    # A second replay is a new pass: the same events, new keys.
    second = replay_cli(first_event, "--to", str(first_event + 2), "--json")
    [once_more] = env.tick().run_requests
    assert once_more.run_key == f"replay:{second.json['replay_id']}:{first.run_key}"


def test_the_cost_guard_applies_to_a_replay_and_its_dry_run(env, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_USER", "olga")
    env.approve()
    [first] = env.tick().run_requests
    assert env.run(first).success
    env.tick()
    first_event = int(first.run_key.split(":")[1].split("-")[0])
    dry = replay_cli(first_event, "--dry-run", "--json")
    assert (dry.json["runs"], dry.json["skipped"]) == ([], {"COST_GUARD": 1})
    replay_cli(first_event)
    assert env.tick().run_requests == []


def test_an_event_the_sensor_cannot_read_is_set_aside_after_its_attempts(operator_env, monkeypatch):
    env = operator_env
    monkeypatch.setenv("MDSTUDIO_CONSUMER_MAX_ATTEMPTS", "2")
    env.approve(key="finance.revenue.before", tier="tier3")
    with UnitOfWork(env.engine) as uow:
        [poison] = uow.events.append([unreadable_due_event(env.tenant)])
        uow.commit()
    stopped = env.tick()  # the events before it are handled; the tick stops at it
    assert orjson.loads(stopped.cursor)["position"] == poison.id - 1
    assert store_cursor(env).failing_event_id == poison.id
    still = env.tick()
    assert isinstance(still, dg.SkipReason) is False  # set aside: the cursor moves past it
    assert orjson.loads(still.cursor)["position"] == poison.id
    env.approve()
    [run] = env.tick().run_requests  # the stream goes on
    assert int(run.run_key.split(":")[1].split("-")[0]) > poison.id
    listed = run_cli(["events", "dead-letters", "--consumer", "approval_sensor", "--json"])
    [letter] = listed.json
    assert (letter["event_id"], letter["attempts"]) == (poison.id, 2)
    assert letter["error"] == (
        "ValueError: invalid metadata.profile.due payload: tier: Field required; "
        "reason: Field required; priority: Field required; version: Field required; "
        "binding: Field required"
    )
    assert store_cursor(env).failing_event_id is None

    # Handed back: the next tick handles it again, under the retry's key; it fails again.
    run_cli(["events", "dead-letters", "retry", str(letter["id"])])
    assert isinstance(env.tick(), dg.SkipReason)
    [dead_again] = run_cli(["events", "dead-letters", "--json"]).json
    assert dead_again["attempts"] == 3


def test_a_retried_letter_requests_its_run_keyed_by_the_retry(operator_env, monkeypatch):
    """A letter whose event is readable now (say, set aside while a bug was deployed): the
    retry's run is keyed by the retry, and the letter is marked retried once Dagster committed
    the tick that asked for it."""
    env = operator_env
    env.approve()
    [first] = env.tick().run_requests
    assert env.run(first).success
    due = int(first.run_key.split(":")[1].split("-")[1])
    with UnitOfWork(env.engine) as uow:
        [event] = uow.events.list(after=due - 1, limit=1)
        uow.dead_letters.add("approval_sensor", event, "KeyError: 'reason'", 5, event.occurred_at)
        uow.commit()
    [letter] = run_cli(["events", "dead-letters", "--json"]).json
    run_cli(["events", "dead-letters", "retry", str(letter["id"])])
    [retried] = env.tick().run_requests
    assert retried.run_key.startswith(f"retry:{letter['id']}:5:events:{due}-{due}:")
    assert run_cli(["events", "dead-letters", "--status", "retrying", "--json"]).json != []
    env.tick()  # records what the committed tick did
    [done] = run_cli(["events", "dead-letters", "--status", "retried", "--json"]).json
    assert done["id"] == letter["id"]
    assert not getattr(env.tick(), "run_requests", None)


def test_a_cursor_of_the_previous_release_is_read_as_a_position(env):
    env.approve(key="sales.misc.note", tier="tier3")
    env.approve(key="sales.misc.other", tier="tier3")
    env.cursor = "3"  # what the sensor committed before it kept a generation
    result = env.tick()
    assert orjson.loads(result.cursor) == {"position": 6, "generation": 0, "retried": []}
    assert store_cursor(env).position == 3
    env.tick()
    assert store_cursor(env).position == 6


def test_a_replays_own_event_is_read_without_observing_an_entity(operator_env):
    env = operator_env
    env.approve(key="sales.misc.note", tier="tier3")
    env.tick()
    notifications.collect(UnitOfWork(env.engine), 100, Settings.from_env())
    replayed = consumers.replay(
        UnitOfWork(env.engine), "olga", "notification_sensor", 1, None, dt.datetime.now(dt.UTC)
    )
    result = env.tick()
    assert orjson.loads(result.cursor)["position"] == replayed.id
    deployment = partition_key(DEPLOYMENT_TENANT, "notification_sensor")
    assert deployment not in env.instance.get_dynamic_partitions(CATALOG_ENTITIES.name)
    assert partition_key(env.tenant, "sales.misc.note") in env.instance.get_dynamic_partitions(
        CATALOG_ENTITIES.name
    )


def test_event_retention_archives_daily_in_a_run_when_retention_is_set(env, monkeypatch, tmp_path):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    with UnitOfWork(env.engine) as uow:
        written = uow.events.append(
            [
                make_event(
                    "approval.rejected",
                    env.tenant,
                    f"finance.kpi.k{n}",
                    {"n": n},
                    actor="bob",
                    occurred_at=old if n < 3 else None,
                    entity_type=EntityType.KPI,
                )
                for n in range(5)
            ]
        )
        for name in ("approval_sensor", "notification_sensor"):
            uow.cursors.save(ConsumerCursor(name, position=written[-1].id))
        uow.commit()
    when = dt.datetime(2026, 12, 1, 4, 15, tzinfo=dt.UTC)
    off = env.schedule("event_retention", when)
    assert isinstance(off, dg.SkipReason) and "MDSTUDIO_EVENT_RETENTION_DAYS" in off.skip_message
    monkeypatch.setenv("MDSTUDIO_EVENT_RETENTION_DAYS", "30")
    monkeypatch.setenv("MDSTUDIO_EVENT_ARCHIVE_DIR", str(tmp_path / "archive"))
    request = env.schedule("event_retention", when)
    assert request.run_key == "event_retention:2026-12-01"
    job = load_defs().resolve_job_def("event_retention_job")
    assert job.execute_in_process(instance=env.instance, tags=request.tags).success
    with UnitOfWork(env.engine) as uow:
        assert uow.events.lowest() == written[3].id
        [record] = uow.archives.list()
    assert (record.events, record.archived_by) == (3, "event_retention")
    assert len(list((tmp_path / "archive").glob("events-*.parquet"))) == 1
