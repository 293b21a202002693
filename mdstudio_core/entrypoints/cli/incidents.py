"""`mdstudio incidents`: quality incidents."""

from __future__ import annotations

import click

from mdstudio_core.domain.incidents import Incident, IncidentStatus
from mdstudio_core.domain.model import Tier
from mdstudio_core.entrypoints.cli.output import emit, jsonable, print_record, print_table
from mdstudio_core.entrypoints.cli.plumbing import cli, common_options, identity, runtime
from mdstudio_core.service_layer import incidents


@cli.group("incidents")
def incidents_group() -> None:
    """Quality incidents: opened by failing checks, resolved by recovery or by a person."""


INCIDENT_SUMMARY = (
    "id",
    "status",
    "canonical_key",
    "tier",
    "last_score",
    "opened_at",
    "acknowledged_by",
    "resolved_by",
    "resolution",
    "previous_incident_id",
)


def emit_incident(incident: Incident) -> None:
    record = jsonable(incident)
    emit(record, lambda: print_record(record, INCIDENT_SUMMARY))


@incidents_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in IncidentStatus]))
@click.option("--tier", type=click.Choice([t.value for t in Tier]))
@click.option("--entity", "entity_key", help="Only incidents of this canonical key.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@common_options
def incidents_list(
    status: str | None, tier: str | None, entity_key: str | None, limit: int, offset: int
) -> None:
    """The tenant's incidents, newest first."""
    records = jsonable(
        incidents.list_incidents(
            runtime().uow(),
            identity(),
            status=IncidentStatus(status) if status else None,
            tier=Tier(tier) if tier else None,
            entity_key=entity_key,
            limit=limit,
            offset=offset,
        )
    )
    emit(records, lambda: print_table(records, INCIDENT_SUMMARY[:6]))


@incidents_group.command("show")
@click.argument("incident_id")
@common_options
def incidents_show(incident_id: str) -> None:
    """One incident."""
    emit_incident(incidents.get_incident(runtime().uow(), identity(), incident_id))


@incidents_group.command("ack")
@click.argument("incident_id")
@click.option("--note", help="What is being done about it.")
@common_options
def incidents_ack(incident_id: str, note: str | None) -> None:
    """Acknowledge: someone is on it (the role deciding the entity's tier, or tenant_admin)."""
    run = runtime()
    emit_incident(incidents.acknowledge(run.uow(), identity(), incident_id, note, run.settings))


@incidents_group.command("resolve")
@click.argument("incident_id")
@click.option("--reason", required=True, help="Why it is closed.")
@common_options
def incidents_resolve(incident_id: str, reason: str) -> None:
    """Close an incident with a reason (the role deciding the entity's tier, or tenant_admin)."""
    run = runtime()
    emit_incident(incidents.resolve(run.uow(), identity(), incident_id, reason, run.settings))
