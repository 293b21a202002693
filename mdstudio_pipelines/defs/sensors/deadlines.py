"""`approval_deadline_sensor`: the Dagster daemon marks each approval request still pending
past its deadline with one `approval.overdue` event (`service_layer.deadlines`), within a minute
of the deadline; notification_sensor sends it to the webhooks subscribed to it."""

import dagster as dg

from mdstudio_core.config import Settings
from mdstudio_core.service_layer import deadlines
from mdstudio_pipelines.defs.resources import CatalogResource
from mdstudio_pipelines.defs.sensors import running_sensor

# A tick every 30 s at most, so an overdue request is marked within a minute of its deadline.
INTERVAL_SECONDS = 30


def build_approval_deadline_sensor(settings: Settings) -> dg.SensorDefinition:
    """`approval_deadline_sensor` (running by default; it does nothing while no
    `MDSTUDIO_*APPROVAL_SLA_HOURS` is set)."""

    @running_sensor(
        "approval_deadline_sensor",
        INTERVAL_SECONDS,
        "Writes approval.overdue once for each approval request still pending past its "
        "deadline (MDSTUDIO_APPROVAL_SLA_HOURS, MDSTUDIO_<TIER>_APPROVAL_SLA_HOURS).",
    )
    def approval_deadline_sensor(
        context: dg.SensorEvaluationContext, catalog: CatalogResource
    ) -> dg.SkipReason:
        if not catalog.settings.approval_deadlines.slas:
            return dg.SkipReason("no approval deadline is set (MDSTUDIO_APPROVAL_SLA_HOURS)")
        marked = deadlines.mark_overdue(catalog.uow(), catalog.settings)
        for approval in marked:
            context.log.info(
                f"approval {approval.id} ({approval.entity_key}, {approval.tier.value}) is overdue"
            )
        return dg.SkipReason(f"{len(marked)} approval requests became overdue")

    return approval_deadline_sensor
