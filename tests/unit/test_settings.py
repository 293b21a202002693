"""One `Settings`, read from the environment once per entry point: defaults, every variable
read by its own name, and a malformed value failing at start (CLI, HTTP server, Dagster code
location) with a message naming the variable and never its value."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mdstudio_core.config import Settings
from mdstudio_core.domain.errors import ConfigurationError
from mdstudio_core.domain.model import ProfileLimits, StoreTimeouts, Tier
from mdstudio_core.domain.quality import QualityThresholds
from tests.support.cli_helpers import run_cli

ROOT = Path(__file__).parents[2]


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.home == tmp_path / ".mdstudio"
    assert settings.store_url == f"sqlite:///{tmp_path / '.mdstudio' / 'mdstudio.db'}"
    assert settings.trusted_header_auth is False
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.min_rerun == dt.timedelta(hours=12)
    assert settings.quality_thresholds == QualityThresholds(80, 70)
    assert settings.profile_limits == {tier: ProfileLimits(600.0, None) for tier in Tier}
    assert settings.tables_per_run == 10
    assert settings.sensor_interval_seconds == 15
    assert settings.sensor_max_events == 2000
    assert settings.store_timeouts == StoreTimeouts(statement_s=30.0, lock_s=10.0)
    assert settings.sources == {}
    assert settings.console_idle_timeout == dt.timedelta(minutes=30)
    assert settings.console_login_attempts_per_minute == 10
    assert settings.api_docs is False
    assert (settings.preview_concurrency, settings.preview_timeout_seconds) == (2, 60.0)
    assert settings.preview_limits(Tier.TIER1) == ProfileLimits(60.0, None)
    assert settings.source_max_concurrent_runs == 1
    assert settings.source_run_limit("anything") == 1


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("MDSTUDIO_HOME", "/srv/md", lambda s: s.home == Path("/srv/md")),
        ("MDSTUDIO_TRUSTED_HEADER_AUTH", "1", lambda s: s.trusted_header_auth is True),
        ("MDSTUDIO_TRUSTED_HEADER_AUTH", "0", lambda s: s.trusted_header_auth is False),
        ("MDSTUDIO_MAX_BODY_BYTES", "2048", lambda s: s.max_body_bytes == 2048),
        ("MDSTUDIO_MIN_RERUN_HOURS", "0.5", lambda s: s.min_rerun == dt.timedelta(minutes=30)),
        ("MDSTUDIO_TIER1_MIN_SCORE", "95", lambda s: s.quality_thresholds.tier1_min_score == 95),
        ("MDSTUDIO_TIER2_MIN_SCORE", "55", lambda s: s.quality_thresholds.tier2_min_score == 55),
        ("MDSTUDIO_TIER1_MIN_SCORE", "95", lambda s: s.quality_thresholds.tier2_min_score == 70),
        ("MDSTUDIO_TABLES_PER_RUN", "3", lambda s: s.tables_per_run == 3),
        ("MDSTUDIO_SENSOR_MAX_EVENTS", "7", lambda s: s.sensor_max_events == 7),
        ("MDSTUDIO_SENSOR_INTERVAL_SECONDS", "5", lambda s: s.sensor_interval_seconds == 5),
        (
            "MDSTUDIO_STORE_STATEMENT_TIMEOUT_SECONDS",
            "2.5",
            lambda s: s.store_timeouts == StoreTimeouts(2.5, 10.0),
        ),
        (
            "MDSTUDIO_STORE_LOCK_TIMEOUT_SECONDS",
            "0.5",
            lambda s: s.store_timeouts == StoreTimeouts(30.0, 0.5),
        ),
        (
            "MDSTUDIO_TIER2_TIMEOUT_SECONDS",
            "60",
            lambda s: (
                s.profile_limits[Tier.TIER2] == ProfileLimits(60, None)
                and s.profile_limits[Tier.TIER1] == ProfileLimits(600, None)
            ),
        ),
        (
            "MDSTUDIO_TIER3_SAMPLE_PERCENT",
            "5",
            lambda s: (
                s.profile_limits[Tier.TIER3] == ProfileLimits(600, 5)
                and s.profile_limits[Tier.TIER2] == ProfileLimits(600, None)
            ),
        ),
        ("MDSTUDIO_TIER1_PROFILING_CRON", "*/5 * * * *", lambda s: s.tier1_profiling_cron),
        (
            "MDSTUDIO_CONSOLE_IDLE_MINUTES",
            "5",
            lambda s: s.console_idle_timeout == dt.timedelta(minutes=5),
        ),
        (
            "MDSTUDIO_CONSOLE_LOGIN_ATTEMPTS_PER_MINUTE",
            "3",
            lambda s: s.console_login_attempts_per_minute == 3,
        ),
        ("MDSTUDIO_API_DOCS", "1", lambda s: s.api_docs is True),
        (
            "MDSTUDIO_DATABASE_URL",
            "postgres://u:p@db/md",
            lambda s: s.store_url == "postgresql+psycopg://u:p@db/md",
        ),
        (
            "MDSTUDIO_SOURCE_SALES_DW_URL",
            "sqlite:///w.db",
            lambda s: s.source_url("sales_dw") == "sqlite:///w.db",
        ),
        ("MDSTUDIO_PREVIEW_CONCURRENCY", "5", lambda s: s.preview_concurrency == 5),
        (
            "MDSTUDIO_PREVIEW_TIMEOUT_SECONDS",
            "2.5",
            lambda s: s.preview_limits(Tier.TIER2) == ProfileLimits(2.5, None),
        ),
    ],
)
def test_each_variable_is_read_by_its_name(variable, value, read):
    assert read(Settings.from_env({variable: value}))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MDSTUDIO_TABLES_PER_RUN", "x"),
        ("MDSTUDIO_TABLES_PER_RUN", "0"),
        ("MDSTUDIO_SENSOR_MAX_EVENTS", "-3"),
        ("MDSTUDIO_MIN_RERUN_HOURS", "soon"),
        ("MDSTUDIO_MIN_RERUN_HOURS", "-1"),
        ("MDSTUDIO_MAX_BODY_BYTES", "lots"),
        ("MDSTUDIO_TRUSTED_HEADER_AUTH", "perhaps"),
        ("MDSTUDIO_TIER1_MIN_SCORE", "101"),
        ("MDSTUDIO_TIER2_TIMEOUT_SECONDS", "-1"),
        ("MDSTUDIO_STORE_STATEMENT_TIMEOUT_SECONDS", "-2"),
        ("MDSTUDIO_STORE_LOCK_TIMEOUT_SECONDS", "never"),
        ("MDSTUDIO_TIER3_SAMPLE_PERCENT", "150"),
        ("MDSTUDIO_TIER1_PROFILING_CRON", "daily"),
        ("MDSTUDIO_DAGSTER_STORAGE_URL", "postgresql://dagster@db/dagster"),
        ("MDSTUDIO_DATABASE_URL", "not a url"),
        ("MDSTUDIO_SOURCE_WH_TENANTS", "acme"),
        ("MDSTUDIO_CONSOLE_IDLE_MINUTES", "-5"),
        ("MDSTUDIO_CONSOLE_IDLE_MINUTES", "soon"),
        ("MDSTUDIO_CONSOLE_LOGIN_ATTEMPTS_PER_MINUTE", "-1"),
        ("MDSTUDIO_CONSOLE_LOGIN_ATTEMPTS_PER_MINUTE", "2.5"),
        ("MDSTUDIO_API_DOCS", "maybe"),
        ("MDSTUDIO_PREVIEW_CONCURRENCY", "-2"),
        ("MDSTUDIO_PREVIEW_CONCURRENCY", "many"),
        ("MDSTUDIO_PREVIEW_TIMEOUT_SECONDS", "-5"),
        ("MDSTUDIO_PREVIEW_TIMEOUT_SECONDS", "forever"),
        ("MDSTUDIO_SOURCE_MAX_CONCURRENT_RUNS", "0"),
        ("MDSTUDIO_SOURCE_WH_MAX_CONCURRENT_RUNS", "many"),
    ],
)
def test_a_malformed_value_names_its_variable(variable, value):
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert value not in str(caught.value)


def test_a_preview_is_held_to_the_shorter_of_its_tiers_timeout_and_the_preview_timeout():
    settings = Settings.from_env(
        {
            "MDSTUDIO_PREVIEW_TIMEOUT_SECONDS": "30",
            "MDSTUDIO_TIER1_TIMEOUT_SECONDS": "600",
            "MDSTUDIO_TIER2_TIMEOUT_SECONDS": "5",
            "MDSTUDIO_TIER1_SAMPLE_PERCENT": "10",
        }
    )
    assert settings.preview_limits(Tier.TIER1) == ProfileLimits(30, 10)
    assert settings.preview_limits(Tier.TIER2) == ProfileLimits(5, None)
    assert settings.profile_limits[Tier.TIER1] == ProfileLimits(600, 10)  # runs keep theirs
    assert ProfileLimits(None, None).within(30) == ProfileLimits(30, None)


def test_blank_values_count_as_unset():
    assert Settings.from_env({"MDSTUDIO_TABLES_PER_RUN": "  "}).tables_per_run == 10


def _clean_env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDSTUDIO_")}
    return {**env, **variables}


def test_cli_fails_at_start_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", f"sqlite:///{tmp_path / 'md.db'}")
    monkeypatch.setenv("MDSTUDIO_TABLES_PER_RUN", "x")
    result = run_cli(["db", "upgrade"])
    assert result.exit_code == 1
    assert "MDSTUDIO_TABLES_PER_RUN" in result.stderr
    assert not (tmp_path / "md.db").exists()  # nothing ran


def test_secret_in_a_malformed_url_is_never_shown(monkeypatch):
    monkeypatch.setenv("MDSTUDIO_DAGSTER_STORAGE_URL", "postgresql://u:Sup3rSecret@db/dagster")
    result = run_cli(["approvals", "list"])
    assert result.exit_code == 1
    assert "MDSTUDIO_DAGSTER_STORAGE_URL" in result.stderr
    assert "Sup3rSecret" not in result.stderr + result.stdout


def test_http_server_fails_at_start_naming_the_variable(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mdstudio_core.entrypoints.http import create_app; create_app()",
        ],
        env=_clean_env(MDSTUDIO_HOME=str(tmp_path), MDSTUDIO_MAX_BODY_BYTES="lots"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert "MDSTUDIO_MAX_BODY_BYTES" in completed.stderr


def test_code_location_fails_at_load_naming_the_variable(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", "from mdstudio_pipelines.definitions import defs; defs()"],
        env=_clean_env(MDSTUDIO_HOME=str(tmp_path), MDSTUDIO_TABLES_PER_RUN="x"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert completed.returncode != 0
    assert "ConfigurationError: MDSTUDIO_TABLES_PER_RUN" in completed.stderr


def test_a_source_url_is_checked_when_the_source_is_used():
    """One malformed warehouse URL must not stop the catalog: it fails its own tables only,
    named by its variable."""
    from mdstudio_core.adapters import warehouse

    settings = Settings.from_env({"MDSTUDIO_SOURCE_WH_URL": "::nonsense::"})
    with pytest.raises(warehouse.SourceUnavailable, match="MDSTUDIO_SOURCE_WH_URL") as caught:
        warehouse.get_engine("wh", settings.sources)
    assert "nonsense" not in str(caught.value)


def test_a_source_limit_of_its_own_and_the_default_for_the_rest():
    settings = Settings.from_env(
        {
            "MDSTUDIO_SOURCE_MAX_CONCURRENT_RUNS": "2",
            "MDSTUDIO_SOURCE_BIG_MAX_CONCURRENT_RUNS": "5",
            "MDSTUDIO_SOURCE_BIG_URL": "sqlite://",
        }
    )
    assert settings.source_run_limits == {"BIG": 5}
    assert settings.sources == {"BIG": "sqlite://"}
    assert settings.source_run_limit("big") == settings.source_run_limit("BIG") == 5
    assert settings.source_run_limit("small") == 2
