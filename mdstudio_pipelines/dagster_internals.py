"""The one door to Dagster's private API (`dagster._core`).

Two uses, each kept because it is a measured win the public API of the pinned Dagster does not
offer; `tests/pipelines/test_dagster_internals.py` fails loudly when an upgrade changes them.

* `store_observations`: a sensor tick's observations in one batch write. The public way,
  `SensorResult(asset_events=...)` (or `instance.report_runless_asset_event`), writes them one
  at a time, and dagster-postgres opens two connections per write (about 45 ms here), so
  10,000 events would take minutes and break Dagster's tick limit.
* `check_evaluations`: one partition's history of a check. The public
  `DagsterInstance.get_asset_check_execution_history`... does not exist; the event log's method
  with a `PartitionKeyFilter` reads one partition in one query instead of every partition's
  evaluations.
"""

import logging
import time
from collections.abc import Sequence

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.events import AssetObservationData, DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecord

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
        EventLogEntry(
            error_info=None,
            level=logging.INFO,
            user_message="",
            run_id=RUNLESS_RUN_ID,
            timestamp=now,
            dagster_event=DagsterEvent(
                event_type_value=DagsterEventType.ASSET_OBSERVATION.value,
                event_specific_data=AssetObservationData(observation),
                job_name=RUNLESS_JOB_NAME,
            ),
        )
        for observation in observations
    ]
    for start in range(0, len(entries), BATCH):
        instance.event_log_storage.store_event_batch(entries[start : start + BATCH])


def check_evaluations(
    instance: dg.DagsterInstance, check: dg.AssetCheckKey, partition: str, limit: int
) -> list[AssetCheckExecutionRecord]:
    """The executions of `check` on one partition, newest first (planned ones included)."""
    return list(
        instance.event_log_storage.get_asset_check_execution_history(
            check, limit=limit, partition_filter=PartitionKeyFilter(key=partition)
        )
    )
