"""Log records without credentials: each entry point (the CLI, the server, the Dagster code
location) has every log record of its process made by a factory that scrubs the message and the
traceback text (`Settings.scrub`), whichever library logs and whichever handler writes it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mdstudio_core.config import Settings


class ScrubbingRecords:
    """A log record factory: the records of the factory it wraps, their message and traceback
    already formatted and scrubbed (a handler formats a record's traceback only when
    `exc_text` is empty)."""

    def __init__(self, make: Callable[..., logging.LogRecord], scrub: Callable[[str], str]):
        self.make = make
        self.scrub = scrub

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        if record.exc_info:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
        return record


def scrub_log_records(settings: Settings) -> None:
    """Make every log record of this process scrubbed by `settings` (installed once; a later
    call only changes the settings it scrubs with)."""
    factory = logging.getLogRecordFactory()
    if isinstance(factory, ScrubbingRecords):
        factory.scrub = settings.scrub
    else:
        logging.setLogRecordFactory(ScrubbingRecords(factory, settings.scrub))
