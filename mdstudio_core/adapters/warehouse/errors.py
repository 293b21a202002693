"""The ways a profile fails: each says what to fix. A failed profile raises; nothing partial is
returned."""

from __future__ import annotations


class ProfileError(Exception):
    """A profile could not be computed. Nothing was measured or saved."""


class UnknownSource(ProfileError):
    """The binding names a source whose URL is not configured."""


class SourceUnavailable(ProfileError):
    """The source is configured but cannot be connected to."""


class TableNotFound(ProfileError):
    """The bound table does not exist in the source."""


class ColumnNotFound(ProfileError):
    """A bound column does not exist in the table."""


class InvalidPattern(ProfileError):
    """A pattern is not a regular expression the warehouse accepts."""


class ProfileTimeout(ProfileError):
    """The profile ran longer than the tier's statement timeout; no partial result is kept."""


class InvalidIncremental(ProfileError):
    """``binding.incremental`` names a column the table lacks, or one whose values cannot
    order the rows (or, with ``partition: day``, cannot be read as days). ``field`` is the
    binding field to fix."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message
