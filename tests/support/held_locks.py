"""A lock another transaction holds, for tests of what waits on it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from sqlalchemy import RootTransaction


@contextlib.contextmanager
def released_after(transaction: RootTransaction, seconds: float) -> Iterator[Callable[[], None]]:
    """Yields what rolls `transaction` back (and so releases its locks); it is rolled back after
    `seconds` at the latest, so that code waiting without a bound ends late instead of hanging
    the test, and on leaving the block."""
    released = threading.Lock()

    def release() -> None:
        with released:
            if transaction.is_active:
                transaction.rollback()

    timer = threading.Timer(seconds, release)
    timer.start()
    yield release
    timer.cancel()
    release()
