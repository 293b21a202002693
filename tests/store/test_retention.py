"""Retention of the outbox on the store (SQLite and PostgreSQL): `mdstudio events archive`
writes one Parquet file per month and removes the events, never past a consumer's place (it
names the consumer, exit 0); a reader below the horizon gets 410 / exit 4 with the earliest id
kept; `events import` reads an archive into a scratch database, never the live store; a run
that died part way is finished by the next one."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from mdstudio_core.adapters import migrations, tables
from mdstudio_core.adapters.archive import SCHEMA, ArchiveWriter
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.config import Settings
from mdstudio_core.domain.consumers import ConsumerCursor
from mdstudio_core.domain.errors import ConfigurationError
from mdstudio_core.domain.events import NewEvent
from mdstudio_core.domain.model import EntityType
from mdstudio_core.domain.retention import ArchiveRecord, archive_scope
from mdstudio_core.entrypoints.http import create_app
from mdstudio_core.service_layer import retention, tokens
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.store.test_incidents import save
from tests.support.cli_helpers import run_cli
from tests.support.factories import make_event, person

KEY = "finance.revenue.gross_amount"
JAN, FEB, MAR = (dt.datetime(2026, month, 10, 12, tzinfo=dt.UTC) for month in (1, 2, 3))


@pytest.fixture
def store(store_url, engine, monkeypatch):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    monkeypatch.setenv("MDSTUDIO_USER", "olga")
    monkeypatch.delenv("MDSTUDIO_TENANT", raising=False)
    return engine


def event(tenant: uuid.UUID, at: dt.datetime, n: int) -> NewEvent:
    return make_event(
        "approval.rejected",
        tenant,
        f"{KEY}.{n}",
        {"reason": f"no {n}", "nested": {"n": n}},
        actor="bob",
        occurred_at=at + dt.timedelta(minutes=n),
        entity_type=EntityType.KPI,
    )


def outbox(engine, tenant, per_month: int = 5):
    """`per_month` events in each of January, February and March, every consumer past them."""
    with UnitOfWork(engine) as uow:
        written = uow.events.append(
            [event(tenant, month, n) for month in (JAN, FEB, MAR) for n in range(per_month)]
        )
        for name in ("approval_sensor", "notification_sensor"):
            uow.cursors.save(ConsumerCursor(name, position=written[-1].id))
        uow.commit()
    return written


def kept_ids(engine) -> list[int]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(tables.events.c.id).order_by("id")).scalars())


def archived(directory: Path) -> dict[str, list[int]]:
    return {
        path.name: pq.read_table(path).column("id").to_pylist()
        for path in sorted(directory.glob("*.parquet"))
    }


def archive(directory: Path, before: str = "2026-03-01", *extra: str):
    return run_cli(["events", "archive", "--before", before, "--to", str(directory), *extra])


def test_archive_writes_a_parquet_file_per_month_and_removes_the_events(
    store, uow, tenant, tmp_path
):
    written = outbox(store, tenant)
    result = archive(tmp_path / "archive", "2026-03-01", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json
    assert (report["events"], report["first_event_id"], report["last_event_id"]) == (
        10,
        written[0].id,
        written[9].id,
    )
    assert (report["removed"], report["held_back_by"], report["horizon"]) == (10, None, 10)
    assert archived(tmp_path / "archive") == {
        "events-2026-01.parquet": [e.id for e in written[:5]],
        "events-2026-02.parquet": [e.id for e in written[5:10]],
    }
    assert kept_ids(store) == [e.id for e in written[10:]]
    table = pq.read_table(tmp_path / "archive" / "events-2026-02.parquet")
    assert table.schema.remove_metadata() == SCHEMA.remove_metadata()
    row = table.to_pylist()[0]
    assert row["tenant_id"] == str(tenant) and row["entity_type"] == "KPI"
    assert row["occurred_at"] == FEB
    assert json.loads(row["payload"]) == {"reason": "no 0", "nested": {"n": 0}}
    with uow:
        [record] = uow.archives.list()
    assert (record.first_event_id, record.last_event_id, record.events) == (1, 10, 10)
    assert (record.archived_by, record.files) == (
        "olga",
        ("events-2026-01.parquet", "events-2026-02.parquet"),
    )
    again = archive(tmp_path / "archive")
    assert again.exit_code == 0 and "nothing to archive" in again.stdout


def test_archive_never_passes_a_consumer_and_says_which_holds_it_back(store, uow, tenant, tmp_path):
    written = outbox(store, tenant)
    register = ["events", "consumers", "register", "audit.feed", "--from", str(written[3].id)]
    assert run_cli(register).exit_code == 0  # it has handled up to January's third event
    held = archive(tmp_path, "2026-03-01")
    assert held.exit_code == 0, held.stderr
    assert f"held back by audit.feed, at event {written[2].id}" in held.stdout
    assert archived(tmp_path) == {"events-2026-01.parquet": [e.id for e in written[:3]]}
    assert kept_ids(store)[0] == written[3].id
    run_cli(["events", "consumers", "ack", "audit.feed", str(written[7].id)])
    moved = archive(tmp_path, "2026-03-01", "--json")
    assert (moved.json["events"], moved.json["held_back_by"]) == (5, "audit.feed")
    # January's file is rewritten whole, each event once; one file per month.
    assert archived(tmp_path) == {
        "events-2026-01.parquet": [e.id for e in written[:5]],
        "events-2026-02.parquet": [e.id for e in written[5:8]],
    }
    # A consumer that never read (the sensors before their first tick) holds everything back.
    with uow:
        uow.cursors.remove("notification_sensor")
        uow.commit()
    run_cli(["events", "consumers", "ack", "audit.feed", str(written[-1].id)])
    nothing = archive(tmp_path, "2026-03-01", "--json")
    assert (nothing.json["events"], nothing.json["held_back_by"]) == (0, "notification_sensor")
    assert nothing.json["held_back_at"] == 0 and kept_ids(store)[0] == written[8].id


def test_below_the_horizon_readers_get_410_and_exit_4_with_the_earliest_id(
    store, uow, tenant, tmp_path
):
    written = outbox(store, tenant)
    archive(tmp_path, "2026-02-01")  # January: ids 1 to 5
    secret, _ = tokens.create_token(uow, person(tenant, "alice"))
    headers = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(engine=store)) as client:
        gone = client.get("/events?after=0", headers=headers)
        assert gone.status_code == 410
        assert gone.headers["content-type"] == "application/problem+json"
        assert gone.json()["earliest_id"] == written[5].id
        assert "resume after 5" in gone.json()["detail"]
        assert client.get("/events?after=4", headers=headers).status_code == 410
        resumed = client.get(f"/events?after={written[4].id}", headers=headers)
        assert resumed.status_code == 200
        assert [e["id"] for e in resumed.json()["items"]] == [e.id for e in written[5:]]
    cli = ["events", "list", "--tenant", str(tenant), "--user", "alice"]
    below = run_cli([*cli, "--after", "2"])
    assert below.exit_code == 4 and "keeps events from 6 on" in below.stderr
    assert run_cli([*cli, "--after", "5", "--json"]).exit_code == 0
    replay = ["events", "replay", "--consumer", "approval_sensor", "--from", "3"]
    assert run_cli(replay).exit_code == 4
    register = ["events", "consumers", "register", "late", "--from", "5"]
    assert run_cli(register).exit_code == 4
    assert run_cli(["events", "consumers", "register", "late", "--from", "6"]).exit_code == 0


def test_an_archive_that_died_part_way_is_finished_without_repeating_an_event(
    store, uow, tenant, tmp_path
):
    written = outbox(store, tenant)
    # Died after writing January's file, before recording it: the file is there, unrecorded.
    with uow:
        january = uow.events.list(after=0, through=written[4].id)
    writer = ArchiveWriter(tmp_path)
    writer.write(january)
    writer.close()
    result = archive(tmp_path, "2026-03-01", "--json")
    assert result.json["events"] == 10
    assert archived(tmp_path)["events-2026-01.parquet"] == [e.id for e in written[:5]]
    # Died after recording March, before removing its events: the next run removes them.
    with uow:
        uow.archives.add(ArchiveRecord(11, written[-1].id, 5, MAR, str(tmp_path), (), MAR, "olga"))
        uow.commit()
    finished = archive(tmp_path, "2026-03-01", "--json")
    assert (finished.json["events"], finished.json["removed"]) == (0, 5)
    assert kept_ids(store) == []


def test_import_reads_the_archive_into_a_scratch_database_never_a_store(
    store, store_url, tenant, tmp_path, request
):
    written = outbox(store, tenant)
    archive(tmp_path / "archive", "2026-03-01")
    if "postgresql" in store_url:
        scratch = request.getfixturevalue("postgres_server").create_database("mdstudio_scratch")
    else:
        scratch = str(tmp_path / "scratch.db")
    imported = run_cli(["events", "import", str(tmp_path / "archive"), "--into", scratch, "--json"])
    assert imported.exit_code == 0, imported.stderr
    assert (imported.json["events"], imported.json["last_event_id"]) == (10, written[9].id)
    assert (
        run_cli(["events", "import", str(tmp_path / "archive"), "--into", scratch]).exit_code == 0
    )
    url = scratch if "://" in scratch else f"sqlite:///{scratch}"
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(tables.events).order_by("id")).all()
    engine.dispose()
    assert [r.id for r in rows] == [e.id for e in written[:10]]  # each once
    assert rows[0].payload == {"reason": "no 0", "nested": {"n": 0}}
    assert rows[0].occurred_at.replace(tzinfo=dt.UTC) == JAN
    live = run_cli(["events", "import", str(tmp_path / "archive"), "--into", store_url])
    assert live.exit_code == 2 and "live store" in live.stderr
    other_store = tmp_path / "other.db"  # any mdstudio store is refused, not only this one
    other = create_store_engine(f"sqlite:///{other_store}")
    migrations.upgrade(other)
    other.dispose()
    refused = run_cli(["events", "import", str(tmp_path / "archive"), "--into", str(other_store)])
    assert refused.exit_code == 2 and "alembic_version" in refused.stderr
    assert run_cli(["events", "import", str(tmp_path / "nowhere")]).exit_code == 2


def test_the_consumer_furthest_behind_limits_an_archive():
    scope = archive_scope(10, 100, {"a": 50, "b": 30, "c": 30})
    assert (scope.through, scope.held_back_by) == (30, ("b", 30))
    assert archive_scope(10, 20, {"a": 50}).held_back_by is None
    assert archive_scope(10, 20, {"a": 50}).through == 20
    assert archive_scope(40, 100, {"a": 30}).through == 40  # never below the horizon


def test_retention_days_need_an_archive_directory(tmp_path):
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_env({"MDSTUDIO_EVENT_RETENTION_DAYS": "30"})
    assert refused.value.variable == "MDSTUDIO_EVENT_ARCHIVE_DIR"
    with pytest.raises(ConfigurationError) as zero:
        Settings.from_env({"MDSTUDIO_EVENT_RETENTION_DAYS": "0", "MDSTUDIO_EVENT_ARCHIVE_DIR": "x"})
    assert zero.value.variable == "MDSTUDIO_EVENT_RETENTION_DAYS"
    settings = Settings.from_env(
        {"MDSTUDIO_EVENT_RETENTION_DAYS": "30", "MDSTUDIO_EVENT_ARCHIVE_DIR": str(tmp_path)}
    )
    assert (settings.event_retention_days, settings.event_archive_dir) == (30, tmp_path)
    assert Settings.from_env({}).event_retention_days is None


def test_the_profiles_counter_keeps_what_the_archive_took(store, tenant, tmp_path):
    save(store, tenant, 91.0, "run-1")
    save(store, tenant, 40.0, "run-2", key="finance.revenue.other")
    with UnitOfWork(store) as uow:
        head = uow.events.head()
        for name in ("approval_sensor", "notification_sensor"):
            uow.cursors.save(ConsumerCursor(name, position=head))
        uow.commit()
        before = sorted(uow.metrics.profile_outcomes())
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    report = retention.archive(lambda: UnitOfWork(store), later, tmp_path, "olga", later)
    assert report.events == head and kept_ids(store) == []
    with UnitOfWork(store) as uow:
        assert sorted(uow.metrics.profile_outcomes()) == before
    assert [(t, tier, outcome, n) for t, tier, outcome, n in before] == [
        (tenant, "tier1", "completed", 2)
    ]
