"""Console sessions at the service layer: what a new session holds, which stale sessions a new
sign-in tidies away, and the exact refusal for an id that is not a live session."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from mdstudio_core.adapters import tables
from mdstudio_core.service_layer import console_sessions, tokens
from mdstudio_core.service_layer.console_sessions import open_session, session_identity
from mdstudio_core.service_layer.unit_of_work import UnitOfWork
from tests.factories import STEWARD, person

HOUR = dt.timedelta(hours=1)


def _session_hashes(engine):
    with engine.connect() as connection:
        return {row.session_hash for row in connection.execute(sa.select(tables.console_sessions))}


def test_a_session_holds_its_tokens_identity_and_an_opaque_32_byte_id(engine, tenant):
    """The id is token_urlsafe(32) (43 characters); the identity is the token's."""
    alice = person(tenant, "alice", STEWARD)
    secret, _ = tokens.create_token(UnitOfWork(engine), alice)
    session = open_session(UnitOfWork(engine), secret, HOUR)
    assert session.identity == alice
    assert len(session.id) == 43
    assert session_identity(UnitOfWork(engine), session.id) == alice


def test_signing_in_again_ends_only_the_tokens_expired_sessions(engine, tenant):
    """A new sign-in deletes the token's expired sessions and keeps its live ones."""
    secret, _ = tokens.create_token(UnitOfWork(engine), person(tenant, "alice"))
    live = open_session(UnitOfWork(engine), secret, HOUR)
    expired = open_session(UnitOfWork(engine), secret, -HOUR)
    assert console_sessions.session_hash(expired.id) in _session_hashes(engine)
    latest = open_session(UnitOfWork(engine), secret, HOUR)
    assert _session_hashes(engine) == {
        console_sessions.session_hash(live.id),
        console_sessions.session_hash(latest.id),
    }
    assert session_identity(UnitOfWork(engine), live.id).user == "alice"


@pytest.mark.parametrize("session_id", ["", "x" * 101, "not-a-session"])
def test_an_id_that_is_no_live_session_is_refused_with_the_sign_in_again_message(
    engine, session_id
):
    """Empty, overlong and unknown ids all get the same message telling the user what to do."""
    with pytest.raises(tokens.Unauthenticated) as refused:
        session_identity(UnitOfWork(engine), session_id)
    assert str(refused.value) == "the session has ended or expired: sign in again"
