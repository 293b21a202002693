"""`mdstudio notifications`: webhooks and their deliveries."""

from __future__ import annotations

import click

from mdstudio_core.domain.model import Tier
from mdstudio_core.domain.notifications import DeliveryStatus
from mdstudio_core.entrypoints.cli.output import emit, jsonable, print_record, print_table
from mdstudio_core.entrypoints.cli.plumbing import cli, common_options, identity, runtime
from mdstudio_core.service_layer import notifications


@cli.group("notifications")
def notifications_group() -> None:
    """Webhooks told about quality incidents (and other events), one message per run."""


SUBSCRIPTION_SUMMARY = ("id", "host", "events", "min_tier", "created_by", "created_at")
DELIVERY_SUMMARY = (
    "id",
    "status",
    "attempts",
    "group_key",
    "next_attempt_at",
    "last_status_code",
    "last_error",
)


@notifications_group.command("subscribe")
@click.option(
    "--url",
    required=True,
    help="http(s) URL that receives the POSTs (a public address, unless the operator set "
    "MDSTUDIO_NOTIFY_ALLOW_PRIVATE=1).",
)
@click.option("--events", help="Comma-separated event type patterns (default quality.incident.*).")
@click.option(
    "--min-tier",
    type=click.Choice([t.value for t in Tier]),
    help="Only events of this tier or stricter.",
)
@common_options
def notifications_subscribe(url: str, events: str | None, min_tier: str | None) -> None:
    """Subscribe a webhook (tenant_admin). The signing secret is printed once."""
    run = runtime()
    patterns = events.split(",") if events else None
    secret, subscription = notifications.subscribe(
        run.uow(), identity(), url, patterns, min_tier, run.settings
    )
    record = jsonable({**subscription.public(), "secret": secret})
    emit(
        record,
        lambda: (
            print_record(record, SUBSCRIPTION_SUMMARY),
            click.echo(f"secret:     {secret}"),
            click.echo("the secret signs every delivery; it is shown only this once", err=True),
        ),
    )


@notifications_group.command("list")
@common_options
def notifications_list() -> None:
    """The tenant's active subscriptions (never their secrets)."""
    found = notifications.list_subscriptions(runtime().uow(), identity())
    records = jsonable([subscription.public() for subscription in found])
    emit(records, lambda: print_table(records, SUBSCRIPTION_SUMMARY))


@notifications_group.command("unsubscribe")
@click.argument("subscription_id")
@common_options
def notifications_unsubscribe(subscription_id: str) -> None:
    """End a subscription."""
    record = jsonable(
        notifications.unsubscribe(runtime().uow(), identity(), subscription_id).public()
    )
    emit(record, lambda: print_record(record, SUBSCRIPTION_SUMMARY))


@notifications_group.command("deliveries")
@click.option("--status", type=click.Choice([s.value for s in DeliveryStatus]))
@click.option("--limit", type=int, default=100, show_default=True)
@common_options
def notifications_deliveries(status: str | None, limit: int) -> None:
    """The tenant's deliveries, newest first."""
    records = jsonable(
        notifications.list_deliveries(runtime().uow(), identity(), status, limit=limit)
    )
    emit(records, lambda: print_table(records, DELIVERY_SUMMARY))


@notifications_group.command("redeliver")
@click.argument("delivery_id")
@common_options
def notifications_redeliver(delivery_id: str) -> None:
    """Send a delivery again at the next tick (a dead one, say)."""
    record = jsonable(notifications.redeliver(runtime().uow(), identity(), delivery_id))
    emit(record, lambda: print_record(record, DELIVERY_SUMMARY))
