"""`mdstudio events`: the outbox, its consumers, replays, dead letters and the archive
(operator commands: the store, no tenant identity, except `events list`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mdstudio_core.domain.consumers import DeadLetter, DeadLetterStatus
from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.events import EventsReplayed, read_payload
from mdstudio_core.entrypoints.cli.output import emit, jsonable, print_record, print_table
from mdstudio_core.entrypoints.cli.plumbing import (
    Runtime,
    cli,
    common_options,
    identity,
    operator,
    runtime,
)
from mdstudio_core.service_layer import catalog, consumers, notifications, retention


@cli.group("events")
def events_group() -> None:
    """The event stream (transactional outbox)."""


@events_group.command("list")
@click.option("--after", type=int, default=0, show_default=True, help="Only events after this id.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--entity", "entity_key", help="Only events of this entity key.")
@common_options
def events_list(after: int, limit: int, entity_key: str | None) -> None:
    """The tenant's events, oldest first; continue with --after LAST_ID."""
    records = jsonable(
        catalog.list_events(
            runtime().uow(), identity(), after=after, limit=limit, entity_key=entity_key
        )
    )
    emit(
        records,
        lambda: print_table(
            records,
            ("id", "type", "entity_type", "entity_key", "actor", "occurred_at", "correlation_id"),
        ),
    )


CONSUMER_SUMMARY = ("name", "position", "lag_events", "lag_seconds", "dead_letters")
DEAD_LETTER_SUMMARY = (
    "id",
    "consumer",
    "event_id",
    "event_type",
    "status",
    "attempts",
    "failed_at",
    "error",
)
# What a replay would cause, per consumer: a consumer's planner (`--dry-run`) is given the
# runtime and the range; the pipelines add approval_sensor's (it needs Dagster).
ReplayPlanner = Callable[[Runtime, consumers.ReplayRange], dict[str, Any]]
DRY_RUNS: dict[str, ReplayPlanner] = {}
REPLAY_KEY = "replay:<id>"  # the id of the events.replayed event a real replay records


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@events_group.group("consumers", invoke_without_command=True)
@common_options
@click.pass_context
def events_consumers(ctx: click.Context) -> None:
    """Every consumer of the outbox (the sensors and the registered ones): position (the last
    event it handled), lag_events, lag_seconds (age of the oldest event it has not handled)
    and dead_letters."""
    if ctx.invoked_subcommand is not None:
        return
    found = consumers.list_consumers(runtime().uow(), _now())
    records = jsonable(found)
    emit(records, lambda: print_table(records, CONSUMER_SUMMARY))


@events_consumers.command("register")
@click.argument("name")
@click.option(
    "--from", "from_event_id", type=int, help="First event it handles (default: the next one)."
)
@common_options
def events_consumers_register(name: str, from_event_id: int | None) -> None:
    """Register an external consumer, at the outbox's head unless --from says otherwise."""
    cursor = consumers.register(runtime().uow(), name, from_event_id, _now())
    record = {"name": cursor.consumer, "position": cursor.position}
    emit(record, lambda: print_record(record))


@events_consumers.command("ack")
@click.argument("name")
@click.argument("event_id", type=int)
@common_options
def events_consumers_ack(name: str, event_id: int) -> None:
    """An external consumer has handled the stream through EVENT_ID (its cursor moves on)."""
    cursor = consumers.acknowledge(runtime().uow(), name, event_id, _now())
    record = {"name": cursor.consumer, "position": cursor.position}
    emit(record, lambda: print_record(record))


@events_consumers.command("unregister")
@click.argument("name")
@common_options
def events_consumers_unregister(name: str) -> None:
    """Forget an external consumer (it no longer holds retention back)."""
    consumers.unregister(runtime().uow(), name)
    emit({"name": name, "unregistered": True}, lambda: click.echo(f"{name} unregistered"))


@events_group.command("replay")
@click.option("--consumer", "name", required=True, help="The consumer to replay for.")
@click.option("--from", "first", type=int, required=True, help="First event id to handle again.")
@click.option("--to", "last", type=int, help="Last event id (default: where the consumer got).")
@click.option("--dry-run", is_flag=True, help="List what the replay would cause; change nothing.")
@common_options
def events_replay(name: str, first: int, last: int | None, dry_run: bool) -> None:
    """Move a consumer back so it handles events FROM to TO again, as a new pass: what it causes
    is keyed by the replay, so it happens once per replay even across a crash. Recorded as an
    `events.replayed` event."""
    run = runtime()
    if dry_run:
        planned = consumers.replay_range(run.uow(), name, first, last)
        planner = DRY_RUNS.get(name, _events_to_hand_again)
        record = jsonable(
            {
                "consumer": name,
                "from": planned.first,
                "to": planned.through,
                "dry_run": True,
                **planner(run, planned),
            }
        )
        emit(record, lambda: _print_dry_run(record))
        return
    event = consumers.replay(run.uow(), operator(), name, first, last, _now())
    record = jsonable({"replay_id": event.id, **event.payload})
    emit(
        record,
        lambda: click.echo(
            f"replay {event.id}: {name} handles events {first} to "
            f"{read_payload(event, EventsReplayed).to_event_id} again ({event.type} {event.id})"
        ),
    )


def _events_to_hand_again(run: Runtime, planned: consumers.ReplayRange) -> dict[str, Any]:
    """An external consumer's dry run: the events it would be handed again."""
    found = [
        {"id": e.id, "type": e.type, "tenant_id": e.tenant_id, "entity_key": e.entity_key}
        for page in consumers.events_between(run.uow, planned.first, planned.through)
        for e in page
    ]
    return {"events": found}


def _deliveries_again(run: Runtime, planned: consumers.ReplayRange) -> dict[str, Any]:
    """notification_sensor's dry run: the deliveries the replay would create."""
    return {
        "deliveries": [
            line
            for page in consumers.events_between(run.uow, planned.first, planned.through)
            for line in notifications.would_deliver(run.uow(), page, REPLAY_KEY)
        ]
    }


DRY_RUNS[notifications.CONSUMER] = _deliveries_again


def _print_dry_run(record: dict[str, Any]) -> None:
    click.echo(
        f"dry run: a replay of {record['consumer']} from {record['from']} to {record['to']} "
        "would cause (nothing was changed):"
    )
    for name in ("runs", "deliveries", "events"):
        if name in record:
            click.echo(f"{name}: {len(record[name])}")
            for line in record[name]:
                click.echo("  " + json.dumps(line, default=str))
    if record.get("skipped"):
        click.echo(f"skipped by the cost guards: {json.dumps(record['skipped'])}")


@events_group.command("archive")
@click.option(
    "--before",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]),
    help="Archive the events that happened before this date (UTC).",
)
@click.option("--to", "directory", required=True, help="Directory of the Parquet files.")
@common_options
def events_archive(before: dt.datetime, directory: str) -> None:
    """Move the events that happened before DATE to Parquet files under DIR (one per month),
    then out of the outbox in short batches; never an event a consumer has not handled: the
    consumer holding the archive back is named (exit 0: what could be archived was)."""
    cut = before.replace(tzinfo=dt.UTC)
    if cut > _now():
        raise InvalidInput("must not be in the future", field="before")
    report = retention.archive(
        runtime().uow, cut, Path(directory).expanduser().resolve(), operator(), _now()
    )
    record = jsonable(report)
    emit(record, lambda: _print_archive(report))


def _print_archive(report: retention.ArchiveReport) -> None:
    if report.events:
        click.echo(
            f"archived {report.events} events (ids {report.first_event_id} to "
            f"{report.last_event_id}) to {len(report.files)} files; removed {report.removed} "
            "from mdm_event"
        )
        for path in report.files:
            click.echo(f"  {path}")
    else:
        click.echo(f"nothing to archive (removed {report.removed} left from an earlier run)")
    if report.held_back_by:
        click.echo(
            f"held back by {report.held_back_by}, at event {report.held_back_at}: the events "
            "after it stay until it has handled them"
        )
    click.echo(f"the outbox keeps events from {report.horizon + 1} on")


@events_group.command("import")
@click.argument("directory")
@click.option(
    "--into",
    "target",
    default="events-import.db",
    show_default=True,
    help="Scratch database: a SQLite file path or a SQLAlchemy URL (never the live store).",
)
@common_options
def events_import(directory: str, target: str) -> None:
    """Load archived events (the Parquet files under DIR) into a scratch database's
    mdm_event table, for investigation; each event once however often it is imported."""
    folder = Path(directory).expanduser().resolve()
    if not folder.is_dir():
        raise InvalidInput(f"{directory} is not a directory", field="directory")
    report = retention.import_archive(folder, target, runtime().settings.store_url)
    record = jsonable(report)
    emit(
        record,
        lambda: click.echo(
            f"imported {report.events} events (ids {report.first_event_id} to "
            f"{report.last_event_id}) into {report.target}"
        ),
    )


@events_group.group("dead-letters", invoke_without_command=True)
@click.option("--consumer", "consumer_name", help="Only this consumer's.")
@click.option("--status", type=click.Choice([s.value for s in DeadLetterStatus]), default="dead")
@click.option("--limit", type=int, default=100, show_default=True)
@common_options
@click.pass_context
def events_dead_letters(
    ctx: click.Context, consumer_name: str | None, status: str, limit: int
) -> None:
    """Events a consumer failed on MDSTUDIO_CONSUMER_MAX_ATTEMPTS times and set aside (status
    dead unless --status says otherwise), with their scrubbed error."""
    if ctx.invoked_subcommand is not None:
        return
    found = consumers.dead_letters(runtime().uow(), consumer_name, status, limit=limit)
    records = [_dead_letter_record(letter) for letter in found]
    emit(records, lambda: print_table(records, DEAD_LETTER_SUMMARY))


def _dead_letter_record(letter: DeadLetter) -> dict[str, Any]:
    return jsonable({**dataclasses.asdict(letter), "event_type": letter.event.get("type")})


@events_dead_letters.command("retry")
@click.argument("letter_id", type=int)
@common_options
def events_dead_letters_retry(letter_id: int) -> None:
    """Hand a dead letter back: its consumer handles the event at its next pass."""
    record = _dead_letter_record(consumers.retry(runtime().uow(), operator(), letter_id, _now()))
    emit(record, lambda: print_record(record, DEAD_LETTER_SUMMARY))


@events_dead_letters.command("discard")
@click.argument("letter_id", type=int)
@click.option("--reason", required=True, help="Why it is dropped (kept on the record).")
@common_options
def events_dead_letters_discard(letter_id: int, reason: str) -> None:
    """Drop a dead letter on the record: who, when and why."""
    letter = consumers.discard(runtime().uow(), operator(), letter_id, reason, _now())
    record = _dead_letter_record(letter)
    emit(record, lambda: print_record(record, (*DEAD_LETTER_SUMMARY, "resolved_by", "reason")))
