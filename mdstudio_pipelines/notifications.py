"""`notification_sensor`: the outbox's quality events become webhook deliveries, sent with
retries from the daemon, never from an approval or a profiling run.

Each tick first turns the events after the consumer's cursor (kept in the store, in
`mdm_consumer_cursor`, written in the transaction that writes the deliveries) into deliveries,
then posts those that are due within a time budget. A profiling run's events are held until
the run has finished, so they go out as one message per subscription."""

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_core.service_layer import notifications
from mdstudio_pipelines.resources import CatalogResource

# A tick collects this many events at most and sends for this long at most: well inside
# Dagster's 60 s evaluation limit whatever the backlog or the receivers' speed.
MAX_EVENTS_PER_TICK = 2000
SEND_BUDGET_SECONDS = 20.0


def build_notification_sensor(settings: Settings) -> dg.SensorDefinition:
    """`notification_sensor`, ticking every `MDSTUDIO_NOTIFY_INTERVAL_SECONDS`."""

    @dg.sensor(
        name="notification_sensor",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=settings.notify_interval_seconds,
        description="Sends webhook notifications of quality incidents (one message per "
        "profiling run and subscription), with retries and exponential backoff.",
    )
    def notification_sensor(
        context: dg.SensorEvaluationContext, catalog: CatalogResource
    ) -> dg.SkipReason:
        collected = notifications.collect(catalog.uow(), MAX_EVENTS_PER_TICK, catalog.settings)

        def run_in_progress(group_key: str) -> bool:
            if not group_key.startswith("run:"):
                return False
            run = context.instance.get_run_by_id(group_key.removeprefix("run:"))
            return run is not None and not run.is_finished

        report = notifications.send_due(
            catalog.uow,
            catalog.settings,
            held=run_in_progress,
            budget_seconds=SEND_BUDGET_SECONDS,
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
