"""The one door to Dagster's private API (`dagster._core`) and to the event log storage's
methods that are not `@public`.

Three uses, each kept because it is a measured win the pinned Dagster's public API does not
offer; `tests/pipelines/test_dagster_internals.py` fails loudly when an upgrade changes them.

* `store_observations`: a sensor tick's observations in batch writes. The public way,
  `SensorResult(asset_events=...)`, is written by the daemon one event at a time through
  `instance.report_runless_asset_event` (two PostgreSQL connections per event), against one
  write a batch through `event_log_storage.store_event_batch` (`bench/pipeline.py`): a large
  backlog would otherwise blow Dagster's 60 s tick limit.
* `check_evaluations`: the history of a check (on one partition). No public Python API reads it
  (the deprecated `get_event_records` finds no check rows); the storage's
  `get_asset_check_execution_history` with a `PartitionKeyFilter` reads it from its index. The
  public route is the webserver's GraphQL (`assetCheckExecutions`).
* `keep_for_reconstruction` / `reconstruction_metadata`: a value the code server keeps with
  its definitions and a run worker reads back, so the worker rebuilds the same definitions
  without the query that built them. Dagster hands what a loader added to the current
  `DefinitionsLoadContext`'s pending reconstruction metadata to the run worker (the public
  `Definitions.with_reconstruction_metadata` only adds definition metadata, which does not
  travel), and the public `dg.definitions` gives its function no context: both go through the
  module-level context of `dagster._core.definitions.definitions_load_context`.

For the tests, which reach private API only through this module (`test_dagster_internals.py`
checks that nothing else imports it): `load_as_code_server` / `load_as_run_worker` load the code
location as each process does (no public API loads it in either mode).
"""

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence

import dagster as dg
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.definitions.definitions_load_context import (
    DefinitionsLoadContext,
    DefinitionsLoadType,
)
from dagster._core.definitions.reconstruct import (
    initialize_repository_def_from_pointer,
    reconstruct_repository_def_from_pointer,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.events import AssetObservationData

# What Dagster's own runless events carry: no run, no job.
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecord
from dagster._core.storage.defs_state.base import set_defs_state_storage

BATCH = 500


def store_observations(
    instance: dg.DagsterInstance, observations: Sequence[dg.AssetObservation]
) -> None:
    """Write observations as runless events, `BATCH` per write.

    Like the daemon's own writes of `SensorResult.asset_events`, these happen before the tick's
    cursor is committed, so a tick that fails after this point records them again when it is
    retried (at least once); each observation carries what identifies it, and readers (the
    audit) read repeats once.
    """
    now = time.time()
    entries = [
        dg.EventLogEntry(
            error_info=None,
            level=logging.INFO,
            user_message="",
            run_id=RUNLESS_RUN_ID,
            timestamp=now,
            dagster_event=dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.ASSET_OBSERVATION.value,
                event_specific_data=AssetObservationData(observation),
                job_name=RUNLESS_JOB_NAME,
            ),
        )
        for observation in observations
    ]
    for start in range(0, len(entries), BATCH):
        instance.event_log_storage.store_event_batch(entries[start : start + BATCH])


def check_evaluations(
    instance: dg.DagsterInstance, check: dg.AssetCheckKey, partition: str | None, limit: int
) -> list[AssetCheckExecutionRecord]:
    """The executions of `check` (on one partition, or on all), newest first (planned ones
    included)."""
    return list(
        instance.event_log_storage.get_asset_check_execution_history(
            check,
            limit=limit,
            partition_filter=PartitionKeyFilter(key=partition) if partition is not None else None,
        )
    )


def keep_for_reconstruction(key: str, value: str) -> None:
    """Keep `value` under `key` for the run workers of the definitions being initialized (a
    no-op outside a code server's load)."""
    if not DefinitionsLoadContext.is_set():
        return
    context = DefinitionsLoadContext.get()
    if context.load_type is DefinitionsLoadType.INITIALIZATION:
        context.add_to_pending_reconstruction_metadata(key, value)


def reconstruction_metadata(key: str) -> str | None:
    """The value the code server stored under `key` when this process reconstructs its
    definitions (a run worker); None when it initializes them (the code server itself)."""
    if not DefinitionsLoadContext.is_set():
        return None
    context = DefinitionsLoadContext.get()
    if context.load_type is not DefinitionsLoadType.RECONSTRUCTION:
        return None
    value = context.reconstruction_metadata.get(key)
    return value if isinstance(value, str) else None


@contextlib.contextmanager
def no_defs_state_storage() -> Iterator[None]:
    """Definitions built outside a code server (tests, benches) ask Dagster for the current
    instance's "defs state storage", a context variable each instance sets while it lives and
    resets when disposed. Instances disposed out of order (a module's next to a test's) leave
    a disposed one there, and building definitions then fails; this clears it for a block."""
    with set_defs_state_storage(None):
        yield


def load_as_code_server(module: str, attribute: str) -> dg.RepositoryDefinition:
    """`module.attribute` loaded as a code server loads it, in a load context of its own (the
    process-wide one is put back after): the result's `repository_load_data` is what the server
    hands to its run workers."""
    initializing = DefinitionsLoadContext(DefinitionsLoadType.INITIALIZATION)
    with DefinitionsLoadContext.scoped(initializing):
        return initialize_repository_def_from_pointer(ModuleCodePointer(module, attribute, None))


def load_as_run_worker(
    module: str, attribute: str, served: dg.RepositoryDefinition
) -> dg.RepositoryDefinition:
    """`module.attribute` rebuilt as a run worker rebuilds it, from what the code server that
    loaded `served` handed over."""
    reconstructing = DefinitionsLoadContext(DefinitionsLoadType.RECONSTRUCTION)
    with DefinitionsLoadContext.scoped(reconstructing):
        return reconstruct_repository_def_from_pointer(
            ModuleCodePointer(module, attribute, None), served.repository_load_data
        )
