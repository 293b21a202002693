"""The one clock the core reads, so every timestamp it writes is timezone-aware UTC."""

import datetime as dt


def now() -> dt.datetime:
    """The current time, in UTC."""
    return dt.datetime.now(dt.UTC)
