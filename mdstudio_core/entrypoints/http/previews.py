"""Previews' own threads. A preview waits on a warehouse (a slow scan, a table someone holds a
lock on): on the threads that serve every other request, enough previews at once would stall
every tenant. Here at most `MDSTUDIO_PREVIEW_CONCURRENCY` run per server process, on threads of
their own; one more is refused at once (`PreviewsBusy`, HTTP 429 with `Retry-After`) instead of
queueing behind them.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class PreviewsBusy(Exception):
    """Every preview slot of this server process is taken; `retry_after_s` says when one frees
    at the latest."""

    def __init__(self, concurrency: int, retry_after_s: int) -> None:
        super().__init__(
            f"{concurrency} previews are running on this server, as many as "
            f"MDSTUDIO_PREVIEW_CONCURRENCY allows: try again in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        """What a refusal answers with besides its status (429), for the API and the console."""
        return {"Retry-After": str(self.retry_after_s)}


class PreviewSlots:
    """A bounded pool for previews: `concurrency` threads and as many slots. A slot is taken
    before the work is handed to a thread and given back when the work ends (not when the
    caller stops waiting), so the bound holds even for a preview nobody waits for any more."""

    def __init__(self, concurrency: int, timeout_s: float) -> None:
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="mdstudio-preview")
        self._lock = threading.Lock()
        self._started: dict[Future[Any], float] = {}

    async def run(self, work: Callable[[], T]) -> T:
        """`work()` on a preview thread; `PreviewsBusy` at once when every slot is taken."""
        with self._lock:
            if len(self._started) >= self.concurrency:
                raise PreviewsBusy(self.concurrency, self._retry_after_s())
            future: Future[T] = self._executor.submit(work)
            self._started[future] = time.monotonic()
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, future: Future[Any]) -> None:
        with self._lock:
            self._started.pop(future, None)

    def _retry_after_s(self) -> int:
        """Seconds until the oldest running preview reaches its timeout (at least 1)."""
        oldest = min(self._started.values())
        return max(1, math.ceil(oldest + self.timeout_s - time.monotonic()))
