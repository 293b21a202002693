"""Console sessions at the service layer: what a new session holds, which stale sessions a new
sign-in tidies away, the exact refusal for an id that is not a live session, the idle timeout
and its once-a-minute last-seen write, sign-in attempts counted per client and minute, and the
sign-in CSRF key made once."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.service_layer import console_sessions, tokens
from mdstudio_core.service_layer.console_sessions import (
    TooManySignIns,
    active_session,
    count_sign_in,
    open_session,
    record_activity,
)
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.support.factories import STEWARD, person

HOUR = dt.timedelta(hours=1)
IDLE = dt.timedelta(minutes=30)
MINUTE = dt.timedelta(minutes=1)


def _session_hashes(engine):
    with engine.connect() as connection:
        return {row.session_hash for row in connection.execute(sa.select(tables.console_sessions))}


def _last_seen(engine, session_id):
    column = tables.console_sessions.c
    with engine.connect() as connection:
        return connection.execute(
            sa.select(column.last_seen_at).where(
                column.session_hash == console_sessions.session_hash(session_id)
            )
        ).scalar_one()


def _set_last_seen(engine, session_id, at):
    column = tables.console_sessions.c
    with engine.begin() as connection:
        connection.execute(
            sa.update(tables.console_sessions)
            .where(column.session_hash == console_sessions.session_hash(session_id))
            .values(last_seen_at=at)
        )


def _session(engine, tenant, lifetime=HOUR):
    secret, _ = tokens.create_token(UnitOfWork(engine), person(tenant, "alice", STEWARD))
    return open_session(UnitOfWork(engine), secret, lifetime, IDLE)


def test_a_session_holds_its_tokens_identity_and_an_opaque_32_byte_id(engine, uow, tenant):
    """The id is token_urlsafe(32) (43 characters); the identity is the token's."""
    alice = person(tenant, "alice", STEWARD)
    secret, _ = tokens.create_token(uow, alice)
    before = dt.datetime.now(dt.UTC)
    session = open_session(uow, secret, HOUR, IDLE)
    assert session.identity == alice
    assert len(session.id) == 43
    assert active_session(uow, session.id, IDLE).identity == alice
    assert before <= _last_seen(engine, session.id) <= dt.datetime.now(dt.UTC)


def test_signing_in_again_ends_only_the_tokens_expired_and_idle_sessions(engine, uow, tenant):
    """A new sign-in deletes the token's expired sessions and those idle past the timeout, and
    keeps its live ones."""
    secret, _ = tokens.create_token(uow, person(tenant, "alice"))
    live = open_session(uow, secret, HOUR, IDLE)
    expired = open_session(uow, secret, -HOUR, IDLE)
    assert console_sessions.session_hash(expired.id) in _session_hashes(engine)
    idle = open_session(uow, secret, HOUR, IDLE)
    assert console_sessions.session_hash(expired.id) not in _session_hashes(engine)
    _set_last_seen(engine, idle.id, dt.datetime.now(dt.UTC) - IDLE - MINUTE)
    latest = open_session(uow, secret, HOUR, IDLE)
    assert _session_hashes(engine) == {
        console_sessions.session_hash(live.id),
        console_sessions.session_hash(latest.id),
    }
    assert active_session(uow, live.id, IDLE).identity.user == "alice"


@pytest.mark.parametrize("session_id", ["", "x" * 101, "not-a-session"])
def test_an_id_that_is_no_live_session_is_refused_with_the_sign_in_again_message(uow, session_id):
    """Empty, overlong and unknown ids all get the same message telling the user what to do."""
    with pytest.raises(tokens.Unauthenticated) as refused:
        active_session(uow, session_id, IDLE)
    assert str(refused.value) == "the session has ended or expired: sign in again"


def test_a_session_left_idle_past_the_timeout_ends_whatever_its_lifetime(engine, uow, tenant):
    session = _session(engine, tenant, lifetime=8 * HOUR)
    now = dt.datetime.now(dt.UTC)
    _set_last_seen(engine, session.id, now - IDLE + MINUTE)  # idle 29 minutes: still live
    assert active_session(uow, session.id, IDLE).identity.user == "alice"
    _set_last_seen(engine, session.id, now - IDLE - MINUTE)  # idle 31 minutes: ended
    with pytest.raises(tokens.Unauthenticated):
        active_session(uow, session.id, IDLE)
    # A longer idle timeout (MDSTUDIO_CONSOLE_IDLE_MINUTES) keeps the same session alive.
    assert active_session(uow, session.id, 2 * IDLE).identity.user == "alice"


def test_the_last_seen_time_is_due_after_a_minute_and_written_once(engine, uow, tenant):
    """Reading a session never writes; its last-seen time is due when a minute old, and
    `record_activity` writes it then only (two pages at once write it once)."""
    session = _session(engine, tenant)
    assert active_session(uow, session.id, IDLE).seen_due is False
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=50)
    _set_last_seen(engine, session.id, recent)
    assert active_session(uow, session.id, IDLE).seen_due is False
    record_activity(uow, session.id)
    assert _last_seen(engine, session.id) == recent  # within the minute: not written
    old = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=70)
    _set_last_seen(engine, session.id, old)
    assert _last_seen(engine, session.id) == old  # the read above wrote nothing
    assert active_session(uow, session.id, IDLE).seen_due is True
    before = dt.datetime.now(dt.UTC)
    record_activity(uow, session.id)
    written = _last_seen(engine, session.id)
    assert before <= written <= dt.datetime.now(dt.UTC)
    record_activity(uow, session.id)
    assert _last_seen(engine, session.id) == written
    assert active_session(uow, session.id, IDLE).seen_due is False


def _attempts(engine):
    column = tables.console_login_attempts.c
    with engine.connect() as connection:
        return sorted(connection.execute(sa.select(column.minute, column.attempts)).all())


def test_sign_in_attempts_are_counted_per_client_and_minute(engine, uow):
    """The limit's attempts pass, the next is refused with the seconds left in the minute;
    another client counts on its own; a new minute starts from zero and drops the old counts."""
    start = dt.datetime(2030, 1, 1, 12, 0, 15, 250000, tzinfo=dt.UTC)
    for n in range(3):
        count_sign_in(uow, "198.51.100.7", 3, start + dt.timedelta(seconds=n))
    with pytest.raises(TooManySignIns) as refused:
        count_sign_in(uow, "198.51.100.7", 3, start + dt.timedelta(seconds=10))
    assert refused.value.retry_after == 35  # 12:00:25.25 -> 12:01:00
    assert "too many sign-in attempts" in str(refused.value)
    with pytest.raises(TooManySignIns) as again:
        count_sign_in(uow, "198.51.100.7", 3, start + dt.timedelta(seconds=44.65))
    assert again.value.retry_after == 1  # 0.1 s left: at least a second
    count_sign_in(uow, "203.0.113.9", 3, start)  # another address
    minute = int(start.timestamp() // 60)
    assert _attempts(engine) == [(minute, 1), (minute, 5)]
    count_sign_in(uow, "198.51.100.7", 3, start + MINUTE)  # the next minute
    assert _attempts(engine) == [(minute + 1, 1)]
    stored = str(_stored_clients(engine))
    assert "198.51.100.7" not in stored  # addresses are kept as hashes


def _stored_clients(engine):
    with engine.connect() as connection:
        return connection.execute(sa.select(tables.console_login_attempts)).all()


def test_concurrent_sign_in_attempts_from_separate_engines_pass_exactly_the_limit(store_url):
    """Twelve attempts at once through four engines (as four server processes would share the
    store): exactly the limit of them pass."""
    engines = [create_store_engine(store_url) for _ in range(4)]
    barrier = threading.Barrier(12)
    outcomes: list[str] = []

    def attempt(engine):
        barrier.wait()
        try:
            count_sign_in(UnitOfWork(engine), "192.0.2.1", 5)
            outcomes.append("passed")
        except TooManySignIns:
            outcomes.append("refused")

    now = dt.datetime.now(dt.UTC)
    if now.second >= 55:  # keep the burst inside one minute
        threading.Event().wait(61 - now.second)
    threads = [threading.Thread(target=attempt, args=(engines[n % 4],)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert sorted(outcomes) == ["passed"] * 5 + ["refused"] * 7


def test_the_login_csrf_key_is_made_once_and_shared(engine, uow, store_url):
    first = console_sessions.login_csrf_key(uow)
    other = create_store_engine(store_url)  # another process's engine
    assert console_sessions.login_csrf_key(UnitOfWork(other)) == first
    other.dispose()
    assert len(first) == 32
    with engine.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(tables.server_keys)).scalar()
            == 1
        )


@pytest.mark.postgres
def test_two_processes_making_the_key_at_once_end_with_one(postgres_url):
    """A transaction of the test's own holds an uncommitted key row until both makers wait on
    it, then rolls it back: both then insert at once, and both must come back with the one key
    that was kept (a maker that looked before inserting would fail on the unique name)."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as connection:
        names = ", ".join(table.name for table in tables.metadata.sorted_tables)
        connection.exec_driver_sql(f"TRUNCATE {names}")
    gate = engine.connect()
    gate.begin()
    gate.execute(
        sa.insert(tables.server_keys).values(
            name=console_sessions.LOGIN_CSRF_KEY,
            secret="00" * 32,
            created_at=dt.datetime.now(dt.UTC),
        )
    )
    makers = [create_store_engine(postgres_url) for _ in range(2)]
    keys: list[bytes] = []
    errors: list[BaseException] = []

    def make(maker):
        try:
            keys.append(console_sessions.login_csrf_key(UnitOfWork(maker)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=make, args=(maker,)) for maker in makers]
    for thread in threads:
        thread.start()
    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    with engine.connect() as watcher:
        while watcher.execute(waiting).scalar_one() < 2:
            assert dt.datetime.now(dt.UTC) < deadline, "the makers never waited on the gate"
            threading.Event().wait(0.02)
    gate.rollback()
    gate.close()
    for thread in threads:
        thread.join()
    for maker in makers:
        maker.dispose()
    assert errors == []
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0] != bytes(32)
    with engine.connect() as connection:
        stored = connection.execute(sa.select(tables.server_keys.c.secret)).scalars().all()
    engine.dispose()
    assert stored == [keys[0].hex()]
