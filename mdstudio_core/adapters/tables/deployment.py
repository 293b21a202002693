"""The tables of the deployment, not of a tenant: the outbox's consumers, dead letters and
archives, the profile passes, the console's sign-in counts and the server's keys."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text, UniqueConstraint

from mdstudio_core.adapters.tables.base import EventId, Json, UtcDateTime, metadata

# Console sign-in attempts per client address (its SHA-256) and minute (Unix time // 60), in
# the store so that every server process sharing it counts the same attempts. Only the current
# minute's rows are kept.
console_login_attempts = Table(
    "mdm_console_login_attempt",
    metadata,
    Column("client_hash", String(64), primary_key=True),
    Column("minute", Integer, primary_key=True),
    Column("attempts", Integer, nullable=False),
    Index("ix_mdm_console_login_attempt_minute", "minute"),
)

# Keys only the server knows (the console's sign-in CSRF key), each made once by whichever
# process needs it first and then shared by all.
server_keys = Table(
    "mdm_server_key",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("secret", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)


# Where each reader of the outbox is (`last_event_id`, the last event it handled), the replay it
# is in (`generation` counts replays; `replay_id` keys the replay's effects; past
# `replay_through` it resumes after `resume_after`), and the event at its head that keeps failing.
consumer_cursors = Table(
    "mdm_consumer_cursor",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("last_event_id", EventId, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("generation", Integer, nullable=False, server_default="0"),
    Column("replay_id", EventId),
    Column("replay_through", EventId),
    Column("resume_after", EventId),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("failing_event_id", EventId),
    Column("last_error", Text),
)

# Events a consumer failed on MDSTUDIO_CONSUMER_MAX_ATTEMPTS times, set aside so it could move
# on: the event itself (it outlives the outbox's retention) and the scrubbed error; `retry`
# hands one back, `discard` drops it on the record.
dead_letters = Table(
    "mdm_dead_letter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("consumer", String(64), nullable=False),
    Column("event_id", EventId, nullable=False),
    Column("event", Json, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("failed_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime),
    Column("resolved_by", String(200)),
    Column("reason", Text),
    UniqueConstraint("consumer", "event_id", name="uq_mdm_dead_letter_event"),
    Index("ix_mdm_dead_letter_status", "consumer", "status"),
    sqlite_autoincrement=True,
)

# Each `mdstudio events archive` (or `event_retention` run): the events it moved from mdm_event
# to Parquet files, ids `first_event_id` to `last_event_id`. The largest `last_event_id` is the
# outbox's horizon: no event at or below it is kept, so a reader resuming below it has missed
# some (HTTP 410). `profile_outcomes` counts the profile events it archived (see /metrics).
event_archives = Table(
    "mdm_event_archive",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("first_event_id", EventId, nullable=False),
    Column("last_event_id", EventId, nullable=False),
    Column("events", Integer, nullable=False),
    Column("before", UtcDateTime, nullable=False),
    Column("directory", Text, nullable=False),
    Column("files", Json, nullable=False),
    Column("archived_at", UtcDateTime, nullable=False),
    Column("archived_by", String(200), nullable=False),
    Column("profile_outcomes", Json, nullable=False),
    UniqueConstraint("first_event_id", name="uq_mdm_event_archive_first"),
    sqlite_autoincrement=True,
)

# A scheduled profiling pass (`tier1_profiling_schedule` at one slot): the schedule's tick
# records it, `profiling_pass_sensor` plans it a page of tables per tick. `planned_through` is
# where planning stands (the last table planned, in page order); `finished_at` ends the pass.
profile_passes = Table(
    "mdm_profile_pass",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("schedule", String(64), nullable=False),
    Column("tier", String(16), nullable=False),
    Column("slot", String(32), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("planned_through", Json),
    Column("tables_planned", Integer, nullable=False, server_default="0"),
    Column("runs_requested", Integer, nullable=False, server_default="0"),
    Column("finished_at", UtcDateTime),
    UniqueConstraint("schedule", "slot", name="uq_mdm_profile_pass_slot"),
    sqlite_autoincrement=True,
)


# Tables of the deployment, not of a tenant; every other table is keyed by tenant.
GLOBAL_TABLES = frozenset(
    {
        consumer_cursors,
        console_login_attempts,
        server_keys,
        dead_letters,
        event_archives,
        profile_passes,
    }
)
