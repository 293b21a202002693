"""`mdstudio lineage`, `impact` and `tenants`: what depends on what, and how Dagster names a
tenant."""

from __future__ import annotations

import uuid
from typing import Any

import click

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.model import EntityType
from mdstudio_core.entrypoints.cli.output import emit, jsonable, print_record, print_table
from mdstudio_core.entrypoints.cli.plumbing import cli, common_options, identity, runtime
from mdstudio_core.service_layer import lineage


def print_trust(record: dict[str, Any]) -> None:
    print_record(record, ("key", "entity_type", "tier", "trust_score", "weakest_input"))
    click.echo("")
    print_table(record["inputs"], ("key", "tier", "quality_score", "profiled_at", "stale"))
    for unscored in record["unscored_inputs"]:
        click.echo(f"unscored: {unscored['key']}: {unscored['reason']}")


@cli.command("lineage")
@click.argument("key")
@common_options
def lineage_command(key: str) -> None:
    """A field: its table, columns and the KPIs depending on it with their trust. A KPI: its
    inputs with their scores, its trust and weakest input."""
    run = runtime()
    record = jsonable(lineage.lineage(run.uow(), identity(), run.settings, key))

    def human() -> None:
        if record["entity_type"] == EntityType.KPI.value:
            print_trust(record)
            return
        print_record(record, ("key", "entity_type", "table", "columns"))
        click.echo("")
        print_table(record["kpis"], ("key", "tier", "trust_score"))

    emit(record, human)


@cli.command("impact")
@click.argument("key")
@common_options
def impact_command(key: str) -> None:
    """The active KPIs a change or degradation of KEY endangers, with tier and trust."""
    run = runtime()
    record = jsonable(lineage.impact(run.uow(), identity(), run.settings, key))
    emit(record, lambda: print_table(record["kpis"], ("key", "tier", "trust_score")))


@cli.group("tenants")
def tenants_group() -> None:
    """Tenants as Dagster shows them."""


@tenants_group.command("name")
@click.argument("tenant")
@click.argument("name")
@common_options
def tenants_name(tenant: str, name: str) -> None:
    """Name TENANT (its UUID) NAME: the first part of its asset keys and its asset group in
    Dagster (a tenant_admin of that tenant; names are identifiers, unique)."""
    try:
        target = uuid.UUID(tenant)
    except ValueError as exc:
        raise InvalidInput("must be a UUID", field="tenant_id") from exc
    record = lineage.name_tenant(runtime().uow(), identity(), target, name)
    emit(record, lambda: click.echo(f"tenant {record['tenant_id']} is named {record['name']}"))
