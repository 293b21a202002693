"""Answer a request sent with an `Idempotency-Key` once: the first request under a key does the
work and stores its answer in the same transaction; a retry gets that answer without the work
being done again (see `mdstudio_core.domain.idempotency`).

Of two requests with the same key at once, exactly one does the work: the other waits for the
first's transaction to end (on PostgreSQL up to `MDSTUDIO_STORE_LOCK_TIMEOUT_SECONDS`, then 503
and the client retries), then gets its answer, or does the work itself if the first failed. A
request that fails stores nothing: its retry is tried again."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from mdstudio_core.domain import clock
from mdstudio_core.domain.idempotency import Answer, KeyedRequest, replay
from mdstudio_core.domain.model import Identity
from mdstudio_core.service_layer.unit_of_work import UnitOfWork


def answer_once(
    uow: UnitOfWork,
    identity: Identity,
    request: KeyedRequest,
    lifetime: dt.timedelta,
    work: Callable[[], Answer],
) -> Answer:
    """`work()`'s answer, or the stored answer of the request that used `request.key` in the
    caller's tenant before (within `lifetime`). `work` runs on `uow`: its commands' commits are
    held, so the work and its stored answer commit together or not at all."""
    now = clock.now()
    with uow:
        stored = uow.idempotency_keys.claim(identity.tenant_id, request, now, now + lifetime)
        if stored is not None:
            return replay(stored, request)
        with uow.held_commits():
            answer = work()
        uow.idempotency_keys.record(identity.tenant_id, request.key, answer)
        uow.commit()
    return answer
