"""The one module that uses Dagster's private API. These tests fail loudly when a Dagster upgrade
changes what it relies on: read `mdstudio_pipelines/lib/dagster_internals.py` and the README's
"Dagster internals" note before moving the pin."""

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import dagster as dg

from mdstudio_pipelines.lib.dagster_internals import (
    check_evaluations,
    load_as_code_server,
    load_as_run_worker,
    no_defs_state_storage,
    store_observations,
)
from tests.support.factories import SETTINGS, unnamed_label

ROOT = Path(__file__).resolve().parents[2]
PINNED = "1.13.27"
ASSET = dg.AssetKey("probe")
PARTITIONS = dg.StaticPartitionsDefinition(["a", "b"])


def test_dagster_is_the_pinned_version():
    assert version("dagster") == PINNED, (
        f"dagster is {version('dagster')}, the internals were checked against {PINNED}: "
        "re-run these tests and re-read mdstudio_pipelines/lib/dagster_internals.py"
    )


def test_the_private_signatures_it_calls_are_unchanged():
    storage = dg.DagsterInstance.ephemeral().event_log_storage
    assert list(inspect.signature(storage.store_event_batch).parameters) == ["events"]
    history = inspect.signature(storage.get_asset_check_execution_history).parameters
    assert {"check_key", "limit", "partition_filter"} <= set(history)
    entry = inspect.signature(dg.EventLogEntry).parameters
    assert {"error_info", "level", "user_message", "run_id", "timestamp", "dagster_event"} <= set(
        entry
    )


def test_observations_written_in_one_batch_read_back_through_the_public_api():
    observations = [
        dg.AssetObservation(asset_key=ASSET, partition="a", metadata={"i": i}) for i in range(1200)
    ]
    with dg.instance_for_test() as instance:
        store_observations(instance, observations)
        records = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=ASSET, asset_partitions=["a"]), limit=2000
        ).records
    assert sorted(r.asset_observation.metadata["i"].value for r in records) == list(range(1200))


@dg.asset(
    key=ASSET,
    partitions_def=PARTITIONS,
    check_specs=[dg.AssetCheckSpec("positive", asset=ASSET, partitions_def=PARTITIONS)],
)
def probe(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    passed = context.partition_key == "a"
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=passed)])


def test_check_history_of_one_partition():
    check = dg.AssetCheckKey(ASSET, "positive")
    with dg.instance_for_test() as instance:
        for partition in ("a", "b", "a"):
            assert dg.materialize([probe], partition_key=partition, instance=instance).success
        history = {p: check_evaluations(instance, check, p, 10) for p in ("a", "b")}
    evaluated = {
        p: [r.event.dagster_event.asset_check_evaluation_data.passed for r in records]
        for p, records in history.items()
    }
    assert evaluated == {"a": [True, True], "b": [False]}


def test_a_run_worker_rebuilds_the_code_servers_graph_without_the_store(
    store_url, tmp_path, monkeypatch
):
    """Loaded as the code server loads it, then reconstructed as a run worker does, from the
    repository load data the code server hands over: the same assets, though the store the
    worker would read is empty."""
    import uuid

    from mdstudio_core.adapters.database import create_store_engine
    from mdstudio_core.service_layer import approvals
    from mdstudio_core.service_layer.unit_of_work import UnitOfWork
    from tests.support.factories import metadata_request, person

    monkeypatch.setenv("MDSTUDIO_DATABASE_URL", store_url)
    engine = create_store_engine(store_url)
    tenant = uuid.uuid4()
    approval = approvals.submit(
        UnitOfWork(engine), person(tenant, "a"), metadata_request(), SETTINGS
    )
    approvals.approve(
        UnitOfWork(engine), person(tenant, "b", approval.required_role), approval.id, None, SETTINGS
    )
    engine.dispose()
    with no_defs_state_storage():
        served = load_as_code_server("mdstudio_pipelines.definitions", "defs")
        keys = set(served.asset_graph.get_all_asset_keys())
        assert dg.AssetKey([unnamed_label(tenant), "warehouse", "sales", "orders"]) in keys
        monkeypatch.setenv("MDSTUDIO_DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
        worker = load_as_run_worker("mdstudio_pipelines.definitions", "defs", served)
        assert set(worker.asset_graph.get_all_asset_keys()) == keys


def test_only_the_wrapper_imports_dagsters_private_api():
    """`dagster._core` and the event log storage's own methods are reached through
    `lib/dagster_internals.py` alone, from the code and from the tests (this module aside: it
    checks the storage's signatures), so a Dagster upgrade has one module to re-read."""
    wrapper = ROOT / "mdstudio_pipelines" / "lib" / "dagster_internals.py"
    private = re.compile(r"^\s*(?:from|import)\s+dagster\._|\.event_log_storage\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("mdstudio_core", "mdstudio_pipelines", "tests", "bench", "demo")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path not in (wrapper, Path(__file__).resolve()) and private.search(path.read_text())
    ]
    assert offenders == []
    assert private.search(wrapper.read_text())
