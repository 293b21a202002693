"""`mdstudio approvals`: propose, decide and inspect catalog changes (one request, or a change
set of many)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from mdstudio_core.domain.approval_filter import ApprovalFilter
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.change_sets import ChangeSet, parse_csv, parse_jsonl
from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.model import ApprovalStatus, EntityType, Lane, Tier
from mdstudio_core.entrypoints.cli.output import emit, jsonable, print_record, print_table
from mdstudio_core.entrypoints.cli.plumbing import cli, common_options, identity, runtime
from mdstudio_core.service_layer import approvals, change_sets

APPROVAL_SUMMARY = (
    "id",
    "status",
    "entity_type",
    "entity_key",
    "tier",
    "lane",
    "required_role",
    "requested_by",
    "requested_at",
    "decided_by",
    "decided_at",
    "decision_reason",
    "required_approvals",
    "endorsements",
)
# A change set's items as `approvals show` prints them, each followed by its changes.
ITEM_SUMMARY = ("item", "entity_type", "entity_key", "tier", "lane", "required_role", "stale")


def emit_approval(approval: Approval) -> None:
    record = jsonable(approval)
    emit(record, lambda: print_record(record, summary_fields(record)))


def summary_fields(record: dict[str, Any]) -> tuple[str, ...]:
    """The summary, with the endorsements only where the request needs several approvers."""
    if record.get("required_approvals", 1) > 1:
        return APPROVAL_SUMMARY
    return tuple(f for f in APPROVAL_SUMMARY if f not in ("required_approvals", "endorsements"))


def print_change_set(record: dict[str, Any]) -> None:
    """A change set for people: the request, then each item with its changes, then the KPIs
    any item endangers."""
    print_record(record, ("title", *summary_fields(record)))
    click.echo(f"\n{len(record['items'])} items:")
    for item in record["items"]:
        click.echo(
            f"item {item['item']}: {item['entity_type']} {item['entity_key']} "
            f"({item['tier']}, {item['lane']}, alone needs {item['required_role']})"
            + (" STALE" if item.get("stale") else "")
        )
        for change in item["changes"]:
            old, new = change["old"], change["new"]
            shown = {"added": f"{new!r}", "removed": f"{old!r}"}.get(
                change["change"], f"{old!r} -> {new!r}"
            )
            click.echo(f"    {change['field']}: {change['change']} {shown}")
    if record.get("impact") is not None:
        click.echo("\nimpact:")
        print_table(record["impact"], ("key", "tier", "trust_score"))


@cli.group("approvals")
def approvals_group() -> None:
    """Propose, decide and inspect catalog changes."""


# File names whose requests form one change set, and how each is read.
CHANGE_SET_FILES = {".jsonl": parse_jsonl, ".ndjson": parse_jsonl, ".csv": parse_csv}


@approvals_group.command("submit")
@click.option(
    "--file",
    "path",
    required=True,
    help="Request JSON file, or - for standard input; a .jsonl (one request per line) or "
    ".csv file (one per row) is submitted as one change set.",
)
@click.option("--title", help="The change set's title (default: the file's name).")
@common_options
def approvals_submit(path: str, title: str | None) -> None:
    """Submit a change request (prints the stored request: id, status, required_role, ...), or
    a change set of many, all or nothing (every invalid item is listed by number)."""
    text = sys.stdin.read() if path == "-" else _read_file(path)
    parse = CHANGE_SET_FILES.get(Path(path).suffix.lower())
    if parse is not None:
        run = runtime()
        change_set = change_sets.submit(
            run.uow(), identity(), title or Path(path).name, parse(text), run.settings
        )
        emit_change_set(change_set)
        return
    if title is not None:
        raise InvalidInput("only a change set (.jsonl or .csv file) has a title", field="title")
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}", field="file") from None
    run = runtime()
    emit_approval(approvals.submit(run.uow(), identity(), raw, run.settings))


@approvals_group.command("approve")
@click.argument("approval_id")
@click.option("--reason", help="Optional note recorded with the decision.")
@common_options
def approvals_approve(approval_id: str, reason: str | None) -> None:
    """Approve and apply a pending request (requires its role; never your own request)."""
    run = runtime()
    emit_approval(approvals.approve(run.uow(), identity(), approval_id, reason, run.settings))


@approvals_group.command("reject")
@click.argument("approval_id")
@click.option("--reason", required=True, help="Why the request is turned down.")
@common_options
def approvals_reject(approval_id: str, reason: str) -> None:
    """Reject a pending request (requires its role; the reason is mandatory)."""
    emit_approval(approvals.reject(runtime().uow(), identity(), approval_id, reason))


@approvals_group.command("cancel")
@click.argument("approval_id")
@click.option("--reason", help="Optional note.")
@common_options
def approvals_cancel(approval_id: str, reason: str | None) -> None:
    """Withdraw your own pending request."""
    emit_approval(approvals.cancel(runtime().uow(), identity(), approval_id, reason))


@approvals_group.command("show")
@click.argument("approval_id")
@common_options
def approvals_show(approval_id: str) -> None:
    """One request in full, with its payload, the state it was made against and its `impact`
    (the KPIs depending on a field whose binding it changes, deprecates or unbinds)."""
    run = runtime()
    record = jsonable(approvals.show_approval(run.uow(), identity(), approval_id, run.settings))
    if record["entity_type"] == EntityType.CHANGE_SET.value:
        emit(record, lambda: print_change_set(record))
        return
    emit(record, lambda: print_record(record))


def emit_change_set(change_set: ChangeSet) -> None:
    record = jsonable(change_set.as_dict())
    emit(record, lambda: print_change_set(record))


@approvals_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in ApprovalStatus]))
@click.option("--entity-type", type=click.Choice([t.value for t in EntityType]))
@click.option("--tier", type=click.Choice([t.value for t in Tier]))
@click.option("--lane", type=click.Choice([lane.value for lane in Lane]))
@click.option("--entity", "entity_key", help="Only requests for this entity key.")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@common_options
def approvals_list(
    status: str | None,
    entity_type: str | None,
    tier: str | None,
    lane: str | None,
    entity_key: str | None,
    limit: int,
    offset: int,
) -> None:
    """The tenant's requests, newest first (`--status pending` is the approver's inbox)."""
    wanted = ApprovalFilter(
        status=ApprovalStatus(status) if status else None,
        entity_type=EntityType(entity_type) if entity_type else None,
        tier=Tier(tier) if tier else None,
        lane=Lane(lane) if lane else None,
        entity_key=entity_key,
        limit=limit,
        offset=offset,
        include_payload=True,
    )
    found = approvals.list_approvals(runtime().uow(), identity(), wanted)
    records = jsonable([listing.as_dict(include_payload=True) for listing in found])
    emit(
        records,
        lambda: print_table(records, APPROVAL_SUMMARY[: APPROVAL_SUMMARY.index("decided_by")]),
    )


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", field="file") from exc
