"""`notification_sensor`: the outbox's quality events become webhook deliveries, sent with
retries from the daemon, never from an approval or a profiling run.

Each tick first turns the events after the consumer's cursor (kept in the store, in
`mdm_consumer_cursor`, written in the transaction that writes the deliveries) into deliveries,
then posts those that are due within a time budget. A profiling run's events are held until
the run has finished, so they go out as one message per subscription."""

import time

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_core.service_layer import notifications
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.defs.sensors import running_sensor

# A tick collects this many events at most, then sends for what is left of its budget (at least
# MIN_SEND_SECONDS): well inside Dagster's 60 s evaluation limit whatever the backlog or the
# receivers' speed (`bench/soak.py` measures the ticks).
MAX_EVENTS_PER_TICK = 2000
TICK_BUDGET_SECONDS = 20.0
MIN_SEND_SECONDS = 5.0


def build_notification_sensor(settings: Settings) -> dg.SensorDefinition:
    """`notification_sensor`, ticking every `MDSTUDIO_NOTIFY_INTERVAL_SECONDS`."""

    @running_sensor(
        "notification_sensor",
        settings.notify_interval_seconds,
        "Sends webhook notifications of quality incidents (one message per profiling run and "
        "subscription), with retries and exponential backoff.",
    )
    def notification_sensor(
        context: dg.SensorEvaluationContext, catalog: CatalogResource
    ) -> dg.SkipReason:
        started = time.monotonic()
        collected = notifications.collect(catalog.uow(), MAX_EVENTS_PER_TICK, catalog.settings)
        finished: dict[str, bool] = {}  # a run's state, read once per tick

        def run_in_progress(group_key: str) -> bool:
            if not group_key.startswith("run:"):
                return False
            run_id = group_key.removeprefix("run:")
            if run_id not in finished:
                run = context.instance.get_run_by_id(run_id)
                finished[run_id] = run is None or run.is_finished
            return not finished[run_id]

        report = notifications.send_due(
            catalog.uow,
            catalog.settings,
            held=run_in_progress,
            budget_seconds=max(
                TICK_BUDGET_SECONDS - (time.monotonic() - started), MIN_SEND_SECONDS
            ),
        )
        stopped = (
            f"; stopped at event {collected.failing} (failed, tried again next tick)"
            if collected.failing
            else ""
        )
        return dg.SkipReason(
            f"read {collected.read} events ({collected.dead_lettered} set aside as dead "
            f"letters, {collected.retried} retried){stopped}; delivered {report.delivered}, "
            f"failed {report.failed}, dead {report.dead}, held back {report.held} "
            "(run in progress)"
        )

    return notification_sensor
