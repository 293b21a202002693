"""Every `MDSTUDIO_*` setting, read from the environment in one place and validated once.

The entry points (the CLI, `mdstudio serve`, the Dagster code location) read them through
`mdstudio_core.bootstrap.read_settings()` when they start and pass the result down; nothing
else reads the environment. A malformed value fails there with a `ConfigurationError` naming
the variable and never echoing the value (a URL may hold a password).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mdstudio_core.domain.deadlines import ApprovalDeadlines
from mdstudio_core.domain.errors import ConfigurationError
from mdstudio_core.domain.incidents import IncidentPolicy
from mdstudio_core.domain.lineage import schedule_period
from mdstudio_core.domain.model import (
    IDENTIFIER_PATTERN,
    ProfileLimits,
    SourceAccess,
    StoreTimeouts,
    Tier,
)
from mdstudio_core.domain.quality import QualityThresholds

PREFIX = "MDSTUDIO_"
SOURCE_VARIABLE = re.compile(
    r"^MDSTUDIO_SOURCE_(?P<name>[A-Za-z_][A-Za-z0-9_]*)_"
    r"(?P<part>URL|TENANTS|SCHEMAS|MAX_CONCURRENT_RUNS)$"
)
# The field of `Settings` each part of a source's configuration goes to.
SOURCE_FIELDS = {
    "URL": "sources",
    "TENANTS": "source_tenants",
    "SCHEMAS": "source_schemas",
    "MAX_CONCURRENT_RUNS": "source_run_limits",
}

Positive = Annotated[float, Field(gt=0)]
Percent = Annotated[float, Field(gt=0, le=100)]
Score = Annotated[float, Field(ge=0, le=100)]
Count = Annotated[int, Field(ge=1)]


def source_variable(source: str, part: str = "URL") -> str:
    """The variable holding `part` (URL, TENANTS or SCHEMAS) of warehouse source `source`
    (its name upper-cased)."""
    return f"{PREFIX}SOURCE_{source.upper()}_{part}"


# A URL's authority as SQLAlchemy reads it: a user name without `:` or `/`, a password up to
# the first `@`, then the host (with its port). A user name or host holding `@` is a password's
# `@` left unencoded: the rest of the password would be taken for the host name, and quoted in
# "failed to resolve host" errors.
_AUTHORITY = re.compile(
    r"^[^:/?#]+://(?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?(?P<host>[^/?#]*)"
)
# What `scrub` looks at: runs of text without spaces, quotes or angle brackets.
_WORD = re.compile(r"[^\s'\"<>]+")
HIDDEN = "***"


def check_url(url: str) -> str:
    """`url` if SQLAlchemy can parse it and its authority holds at most one `@`. The error never
    repeats the URL: it may hold a password, and a password with `@` or `:` in it is the usual
    reason it is refused."""
    authority = _AUTHORITY.match(url)
    if authority and "@" in (authority["user"] or "") + authority["host"]:
        raise ValueError(
            "holds more than one @ before its host: write an @ in the password (or user name) "
            "as %40 (the value is not shown: it holds a password)"
        )
    try:
        make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(
            "is not a valid SQLAlchemy URL (percent-encode special characters in the user "
            "name and password: @ as %40, : as %3A, / as %2F)"
        ) from None
    return url


def scrub(text: str, urls: Iterable[str | None] = ()) -> str:
    """`text` without credentials: the one filter every error text passes before it leaves the
    process (CLI output, HTTP problems, console pages, events, logs), behind `check_url`.

    In any URL in the text, everything between `//` and its last `@` (user, password, and any
    part of a password that spilled past an unencoded `@`) becomes `***`, as does a
    `user:password@` before a host without a scheme; and so does every piece of the password of
    each of `urls` (the configured store and sources) wherever it appears, since a driver may
    quote a host or an option without its URL. Linear in the text's length."""
    text = _WORD.sub(_scrub_word, text)
    secrets = {piece for url in urls if url for piece in _secrets(url)}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def _scrub_word(match: re.Match[str]) -> str:
    word = match.group()
    last_at = word.rfind("@")
    if last_at < 0:
        return word
    scheme_end = word.find("//")
    if 0 <= scheme_end < last_at:
        return word[: scheme_end + 2] + HIDDEN + word[last_at:]
    start = word.rfind("/", 0, last_at) + 1
    if ":" in word[start:last_at]:
        return word[:start] + HIDDEN + word[last_at:]
    return word


def _secrets(url: str) -> set[str]:
    """What of `url` must never be shown: its password (as written and decoded), and what a
    driver would take for part of the host name if an `@` was left unencoded in it."""
    authority = _AUTHORITY.match(url)
    if authority is None:
        return set()
    password, spilled = authority["password"], authority["host"].rpartition("@")[0]
    found = {password, unquote(password)} if password else set()
    return found | {piece for piece in re.split("[@:]", spilled) if piece}


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return frozenset(item.strip() for item in value.split(",") if item.strip())
    return value


Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
TenantList = Annotated[frozenset[uuid.UUID], BeforeValidator(_comma_list)]
SchemaList = Annotated[frozenset[Identifier], BeforeValidator(_comma_list)]
# Host names or shell-style patterns (`*.example.com`), lower-case.
HostList = Annotated[
    frozenset[Annotated[str, Field(pattern=r"^[a-z0-9*?.\[\]:-]+$")]],
    BeforeValidator(lambda value: _comma_list(value.lower() if isinstance(value, str) else value)),
]


class Settings(BaseModel):
    """mdstudio's configuration. Each field `name` is the variable `MDSTUDIO_<NAME>`. The
    warehouse sources are keyed by upper-cased name: `sources` from `MDSTUDIO_SOURCE_<NAME>_URL`
    (checked when a source is used, so one malformed source fails only its own tables),
    `source_tenants`, `source_schemas` and `source_run_limits` from `..._TENANTS`,
    `..._SCHEMAS` and `..._MAX_CONCURRENT_RUNS`."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    home: Path = Path(".mdstudio")
    database_url: str | None = None
    store_statement_timeout_seconds: Positive = 30.0
    store_lock_timeout_seconds: Positive = 10.0
    tenant: str | None = None
    user: str | None = None
    role: str | None = None
    trusted_header_auth: bool = False
    max_body_bytes: Count = 1024 * 1024
    max_payload_bytes: Count = 64 * 1024
    max_change_set_bytes: Count = 32 * 1024 * 1024
    console_session_hours: Positive = 8.0
    console_idle_minutes: Positive = 30.0
    console_login_attempts_per_minute: Count = 10
    api_docs: bool = False
    min_rerun_hours: Annotated[float, Field(ge=0)] = 12.0
    full_profile_every_days: Positive = 7.0
    tier1_timeout_seconds: Positive = 600.0
    tier2_timeout_seconds: Positive = 600.0
    tier3_timeout_seconds: Positive = 600.0
    tier1_sample_percent: Percent | None = None
    tier2_sample_percent: Percent | None = None
    tier3_sample_percent: Percent | None = None
    tier1_min_score: Score = 80.0
    tier2_min_score: Score = 70.0
    approval_sla_hours: Positive | None = None
    tier1_approval_sla_hours: Positive | None = None
    tier2_approval_sla_hours: Positive | None = None
    tier3_approval_sla_hours: Positive | None = None
    preview_concurrency: Count = 2
    preview_timeout_seconds: Positive = 60.0
    backtest_days: Count = 30
    tables_per_run: Count = 10
    schedule_tables_per_tick: Count = 30
    sensor_interval_seconds: Count = 15
    sensor_max_events: Count = 2000
    sensor_max_bytes: Count = 16 * 1024 * 1024
    consumer_max_attempts: Count = 5
    event_retention_days: Count | None = None
    event_archive_dir: Path | None = None
    incident_open_after: Count = 1
    incident_recovery_margin: Annotated[float, Field(ge=0, le=100)] = 2.0
    notify_max_attempts: Count = 8
    notify_backoff_seconds: Positive = 30.0
    notify_timeout_seconds: Positive = 5.0
    notify_interval_seconds: Count = 15
    notify_allowed_hosts: HostList | None = None
    notify_allow_private: bool = False
    metrics_token: str | None = None
    idempotency_key_hours: Annotated[float, Field(ge=24)] = 24.0
    source_max_concurrent_runs: Count = 1
    tier1_profiling_cron: str = "0 2 * * *"
    tier2_profiling_cron: str = "0 3 * * 0"
    dagster_storage_url: str | None = None
    dagster_webserver_url: str = "http://127.0.0.1:3000"
    sources: dict[str, str] = Field(default_factory=dict)
    source_tenants: dict[str, TenantList] = Field(default_factory=dict)
    source_schemas: dict[str, SchemaList] = Field(default_factory=dict)
    source_run_limits: dict[str, Count] = Field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of this process (`environ` defaults to `os.environ`); blank values
        count as unset."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {field: {} for field in SOURCE_FIELDS.values()}
        for name in cls.model_fields:
            raw = env.get(PREFIX + name.upper(), "").strip()
            if raw and name not in values:
                values[name] = raw
        for variable, value in env.items():
            if (match := SOURCE_VARIABLE.match(variable)) and value.strip():
                values[SOURCE_FIELDS[match["part"]]][match["name"].upper()] = value.strip()
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            variable = _variable(error["loc"])
            # `from None`: the validation error's own text repeats the value.
            raise ConfigurationError(f"{variable}: {error['msg']}", variable) from None

    @field_validator("home")
    @classmethod
    def _absolute(cls, home: Path) -> Path:
        return home.expanduser().resolve()

    @field_validator("event_archive_dir")
    @classmethod
    def _archive_dir(cls, directory: Path | None, info: ValidationInfo) -> Path | None:
        if directory is None and info.data.get("event_retention_days") is not None:
            raise ValueError(
                "is required with MDSTUDIO_EVENT_RETENTION_DAYS: the directory the "
                "event_retention schedule archives the outbox's old events to"
            )
        return directory.expanduser().resolve() if directory is not None else None

    @field_validator("database_url")
    @classmethod
    def _store_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):  # plain PostgreSQL URLs run on psycopg 3, our driver
                url = "postgresql+psycopg://" + url.removeprefix(prefix)
        return check_url(url)

    @field_validator("dagster_storage_url")
    @classmethod
    def _psycopg2(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith("postgresql+psycopg2://"):
            raise ValueError(
                "must use the postgresql+psycopg2:// scheme (dagster-postgres needs psycopg2)"
            )
        return check_url(url) if url else None

    @field_validator("dagster_webserver_url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError("must be an http:// or https:// address, e.g. http://127.0.0.1:3000")
        return url.rstrip("/")

    @field_validator("tier1_profiling_cron", "tier2_profiling_cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        if len(cron.split()) != 5:
            raise ValueError("must be a cron expression of five fields, e.g. '0 2 * * *'")
        return cron

    @property
    def store_url(self) -> str:
        """The metadata store: `MDSTUDIO_DATABASE_URL`, else a SQLite file under the home."""
        return self.database_url or f"sqlite:///{self.home / 'mdstudio.db'}"

    @property
    def store_timeouts(self) -> StoreTimeouts:
        """`MDSTUDIO_STORE_STATEMENT_TIMEOUT_SECONDS` and `MDSTUDIO_STORE_LOCK_TIMEOUT_SECONDS`."""
        return StoreTimeouts(self.store_statement_timeout_seconds, self.store_lock_timeout_seconds)

    @property
    def min_rerun(self) -> dt.timedelta:
        """How soon an entity may be profiled again (`MDSTUDIO_MIN_RERUN_HOURS`)."""
        return dt.timedelta(hours=self.min_rerun_hours)

    @property
    def console_session_lifetime(self) -> dt.timedelta:
        """How long a console sign-in lasts at most (`MDSTUDIO_CONSOLE_SESSION_HOURS`); never
        past its token's expiry."""
        return dt.timedelta(hours=self.console_session_hours)

    def preview_limits(self, tier: Tier) -> ProfileLimits:
        """The limits of a preview at `tier`: the tier's, its timeout cut to
        `MDSTUDIO_PREVIEW_TIMEOUT_SECONDS` (a preview answers someone waiting on a page)."""
        return self.profile_limits[tier].within(self.preview_timeout_seconds)

    @property
    def console_idle_timeout(self) -> dt.timedelta:
        """How long a console session may go unused before it ends
        (`MDSTUDIO_CONSOLE_IDLE_MINUTES`), besides its absolute lifetime."""
        return dt.timedelta(minutes=self.console_idle_minutes)

    @property
    def quality_thresholds(self) -> QualityThresholds:
        return QualityThresholds(self.tier1_min_score, self.tier2_min_score)

    @property
    def approval_deadlines(self) -> ApprovalDeadlines:
        """How long a request of each tier may stay pending: `MDSTUDIO_<TIER>_APPROVAL_SLA_HOURS`,
        else `MDSTUDIO_APPROVAL_SLA_HOURS`; a tier with neither has no deadline."""
        return ApprovalDeadlines(
            {
                tier: dt.timedelta(hours=hours)
                for tier in Tier
                if (
                    hours := getattr(self, f"{tier.value}_approval_sla_hours")
                    or self.approval_sla_hours
                )
            }
        )

    @property
    def incident_policy(self) -> IncidentPolicy:
        return IncidentPolicy(self.incident_open_after, self.incident_recovery_margin)

    @property
    def schedule_periods(self) -> dict[Tier, dt.timedelta]:
        """How often each profiled tier's schedule runs (what makes a KPI input stale)."""
        return {
            Tier.TIER1: schedule_period(self.tier1_profiling_cron),
            Tier.TIER2: schedule_period(self.tier2_profiling_cron),
        }

    @property
    def profile_limits(self) -> dict[Tier, ProfileLimits]:
        """`MDSTUDIO_<TIER>_TIMEOUT_SECONDS` and `MDSTUDIO_<TIER>_SAMPLE_PERCENT` per tier."""
        return {
            tier: ProfileLimits(
                timeout_s=getattr(self, f"{tier.value}_timeout_seconds"),
                sample_percent=getattr(self, f"{tier.value}_sample_percent"),
            )
            for tier in Tier
        }

    def scrub(self, text: str) -> str:
        """`text` as it may leave the process: no credentials of any URL in it, nor any piece
        of the passwords of the store and sources configured here (`scrub`)."""
        return scrub(text, [self.database_url, self.dagster_storage_url, *self.sources.values()])

    @property
    def idempotency_key_lifetime(self) -> dt.timedelta:
        """How long the answer of a request sent with an `Idempotency-Key` is kept
        (`MDSTUDIO_IDEMPOTENCY_KEY_HOURS`, at least a day)."""
        return dt.timedelta(hours=self.idempotency_key_hours)

    def source_run_limit(self, source: str) -> int:
        """Profiling runs of warehouse source `source` Dagster runs at once at most:
        `MDSTUDIO_SOURCE_<NAME>_MAX_CONCURRENT_RUNS`, else `MDSTUDIO_SOURCE_MAX_CONCURRENT_RUNS`."""
        return self.source_run_limits.get(source.upper(), self.source_max_concurrent_runs)

    def source_url(self, source: str) -> str | None:
        return self.sources.get(source.upper())

    def source_access(self, source: str) -> SourceAccess:
        """Who may bind `source`, and where (the operator's `_TENANTS` and `_SCHEMAS`)."""
        name = source.upper()
        return SourceAccess(
            source=source,
            tenants=self.source_tenants.get(name),
            schemas=self.source_schemas.get(name),
        )


def _variable(location: tuple[Any, ...]) -> str:
    parts = {field: part for part, field in SOURCE_FIELDS.items()}
    if location and location[0] in parts:
        name = str(location[1]) if len(location) > 1 else "*"
        return source_variable(name, parts[location[0]])
    return PREFIX + str(location[0]).upper() if location else PREFIX + "*"
