"""The queue, retry and monitoring settings live in one place
(`mdstudio_pipelines/lib/instance.py`): the committed instance configs carry exactly what it
generates, each in its own spelling, and an instance written for a process carries its
environment's per-source limits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mdstudio_core.config import Settings
from mdstudio_pipelines.lib import instance

ROOT = Path(__file__).parents[2]
PER_SOURCE = {"key": "mdstudio/source", "value": {"applyLimitPerUniqueValue": True}}


@pytest.mark.parametrize("relative", sorted(instance.COMMITTED))
def test_each_committed_file_holds_the_generated_block(relative):
    spelling, indent = instance.COMMITTED[relative]
    text = (ROOT / relative).read_text()
    block = instance.generated_block(Settings(), spelling, indent)
    assert block in text, f"{relative} is out of date: run `make instance-config`"
    assert instance.with_generated_block(text, block) == text


def test_the_embedded_and_compose_instances_carry_the_same_settings():
    embedded = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    compose = yaml.safe_load((ROOT / "deploy/compose/dagster.yaml").read_text())
    shared = instance.shared_blocks(Settings())
    for block in ("run_queue", "run_retries", "run_monitoring"):
        assert embedded[block] == compose[block] == shared[block]
    assert shared["run_queue"]["tag_concurrency_limits"] == [{**PER_SOURCE, "limit": 1}]


def test_the_helm_values_spell_the_same_settings_the_charts_way():
    daemon = yaml.safe_load((ROOT / "deploy/helm/values.yaml").read_text())["dagsterDaemon"]
    shared = instance.shared_blocks(Settings())
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert queue == {
        "maxConcurrentRuns": shared["run_queue"]["max_concurrent_runs"],
        "dequeueIntervalSeconds": shared["run_queue"]["dequeue_interval_seconds"],
        "tagConcurrencyLimits": shared["run_queue"]["tag_concurrency_limits"],
    }
    assert daemon["runRetries"] == {
        "enabled": True,
        "maxRetries": shared["run_retries"]["max_retries"],
        "retryOnAssetOrOpFailure": False,
    }
    monitoring = shared["run_monitoring"]
    assert daemon["runMonitoring"] == {
        "enabled": True,
        "startTimeoutSeconds": monitoring["start_timeout_seconds"],
        "cancelTimeoutSeconds": monitoring["cancel_timeout_seconds"],
        "maxRuntimeSeconds": monitoring["max_runtime_seconds"],
        "maxResumeRunAttempts": monitoring["max_resume_run_attempts"],
        "pollIntervalSeconds": monitoring["poll_interval_seconds"],
    }


def test_a_stale_committed_block_is_rewritten(tmp_path):
    for relative in instance.COMMITTED:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text((ROOT / relative).read_text())
    stale = tmp_path / "deploy/compose/dagster.yaml"
    stale.write_text(stale.read_text().replace("max_retries: 2", "max_retries: 9"))
    assert instance.write_committed(tmp_path) == [stale]
    assert stale.read_text() == (ROOT / "deploy/compose/dagster.yaml").read_text()
    assert instance.write_committed(tmp_path) == []


def test_a_file_without_exactly_one_generated_block_is_refused():
    block = instance.generated_block(Settings(), "dagster.yaml", 0)
    with pytest.raises(ValueError, match="exactly one block"):
        instance.with_generated_block("run_queue: {}\n", block)
    with pytest.raises(ValueError, match="exactly one block"):
        instance.with_generated_block(block + block, block)


def _limits(**environ: str) -> list[dict]:
    return instance.source_limits(Settings.from_env(environ))


def test_the_default_limit_applies_to_each_source():
    assert _limits() == [{**PER_SOURCE, "limit": 1}]
    assert _limits(MDSTUDIO_SOURCE_MAX_CONCURRENT_RUNS="3") == [{**PER_SOURCE, "limit": 3}]


def test_a_wider_limit_of_its_own_keeps_every_other_known_source_at_the_default():
    """Dagster holds a run when any matching rule is full: the rule per source takes the
    widest limit, and the other sources get theirs by name (lower-case, as the tag is)."""
    limits = _limits(
        MDSTUDIO_SOURCE_BIG_MAX_CONCURRENT_RUNS="3",
        MDSTUDIO_SOURCE_BIG_URL="sqlite://",
        MDSTUDIO_SOURCE_Small_URL="sqlite://",
        MDSTUDIO_SOURCE_TINY_MAX_CONCURRENT_RUNS="2",
    )
    assert limits == [
        {**PER_SOURCE, "limit": 3},
        {"key": "mdstudio/source", "value": "small", "limit": 1},
        {"key": "mdstudio/source", "value": "tiny", "limit": 2},
    ]


def test_a_narrower_limit_of_its_own_is_a_rule_by_name():
    limits = _limits(
        MDSTUDIO_SOURCE_MAX_CONCURRENT_RUNS="4", MDSTUDIO_SOURCE_FRAGILE_MAX_CONCURRENT_RUNS="1"
    )
    assert limits == [
        {**PER_SOURCE, "limit": 4},
        {"key": "mdstudio/source", "value": "fragile", "limit": 1},
    ]


def test_prepare_writes_the_environments_limits_and_drops_storage_without_a_url(tmp_path):
    settings = Settings.from_env(
        {"MDSTUDIO_SOURCE_BIG_MAX_CONCURRENT_RUNS": "2", "MDSTUDIO_SOURCE_WH_URL": "sqlite://"}
    )
    home = instance.prepare(ROOT / "dagster.yaml", settings, tmp_path / "home")
    written = yaml.safe_load((home / "dagster.yaml").read_text())
    assert "storage" not in written
    assert written["run_queue"]["tag_concurrency_limits"] == instance.source_limits(settings)
    assert written["sensors"] == {"use_threads": True, "num_workers": 2}


def test_prepare_hands_docker_runs_every_mdstudio_variable(tmp_path):
    settings = Settings.from_env(
        {"MDSTUDIO_DAGSTER_STORAGE_URL": "postgresql+psycopg2://dagster@db/dagster"}
    )
    environ = {
        "MDSTUDIO_SOURCE_WAREHOUSE_URL": "postgresql://wh/wh",
        "MDSTUDIO_TIER1_MIN_SCORE": "90",
        "MDSTUDIO_DATABASE_URL": "postgresql://db/md",
        "HOME": "/root",
    }
    template = ROOT / "deploy/compose/dagster.yaml"
    home = instance.prepare(template, settings, tmp_path / "home", environ)
    written = yaml.safe_load((home / "dagster.yaml").read_text())
    storage_url = {"env": "MDSTUDIO_DAGSTER_STORAGE_URL"}
    assert written["storage"] == {"postgres": {"postgres_url": storage_url}}
    assert written["run_launcher"]["class"] == "DockerRunLauncher"
    assert written["run_launcher"]["config"]["env_vars"] == [
        "MDSTUDIO_DATABASE_URL",
        "MDSTUDIO_DAGSTER_STORAGE_URL",
        "MDSTUDIO_SOURCE_WAREHOUSE_URL",
        "MDSTUDIO_TIER1_MIN_SCORE",
    ]
