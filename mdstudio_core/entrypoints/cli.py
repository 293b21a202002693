"""The `mdstudio` command line: a thin shell over the services.

Exit codes: 0 ok, 1 environment or internal failure (database or warehouse unreachable, a store
timeout, a source not configured, a profile timeout), 2 invalid input (including a binding naming a
missing table or column), 3 forbidden, 4 not found, 5 conflict. Errors go to standard error and name
the reason; `--json` output goes to standard out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from mdstudio_core.adapters import migrations
from mdstudio_core.adapters.database import create_store_engine
from mdstudio_core.adapters.warehouse import (
    ProfileError,
    ProfileTimeout,
    SourceUnavailable,
    UnknownSource,
)
from mdstudio_core.config import Settings, scrub
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.change_sets import ChangeSet, parse_csv, parse_jsonl
from mdstudio_core.domain.consumers import DeadLetter, DeadLetterStatus
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, MdstudioError, NotFound
from mdstudio_core.domain.incidents import Incident, IncidentStatus
from mdstudio_core.domain.model import (
    CATALOG_ENTITY_TYPES,
    ApiToken,
    ApprovalStatus,
    EntityStatus,
    EntityType,
    Identity,
    Lane,
    Tier,
)
from mdstudio_core.domain.notifications import DeliveryStatus
from mdstudio_core.entrypoints import backtest_text
from mdstudio_core.entrypoints.logs import scrub_log_records
from mdstudio_core.service_layer import (
    approvals,
    catalog,
    change_sets,
    consumers,
    incidents,
    lineage,
    notifications,
    profile_requests,
    profiling,
    retention,
    tokens,
    two_person,
)
from mdstudio_core.service_layer import backtest as backtests
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

EXIT_CODES: dict[type[MdstudioError], int] = {
    InvalidInput: 2,
    Forbidden: 3,
    NotFound: 4,
    Conflict: 5,
}


# -- shared options ------------------------------------------------------------------------
# Identity and --json are accepted both before the command group and after the leaf command
# (`mdstudio --tenant T approvals list` and `mdstudio approvals list --tenant T`).


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def store(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value not in (None, (), False):
            ctx.find_root().meta[f"mdstudio.{name}"] = value

    return store


def common_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--tenant",
            expose_value=False,
            callback=_remember("tenant"),
            help="Tenant UUID (or MDSTUDIO_TENANT).",
        ),
        click.option(
            "--user",
            expose_value=False,
            callback=_remember("user"),
            help="Acting user (or MDSTUDIO_USER).",
        ),
        click.option(
            "--role",
            "roles",
            multiple=True,
            expose_value=False,
            callback=_remember("roles"),
            help="Role held; repeat or comma-separate (or MDSTUDIO_ROLE).",
        ),
        click.option(
            "--json",
            "as_json",
            is_flag=True,
            expose_value=False,
            callback=_remember("json"),
            help="Print JSON.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@dataclass
class Runtime:
    """What one invocation works with: the settings, read once at start, and the store."""

    settings: Settings
    _engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_store_engine(
                self.settings.store_url, self.settings.store_timeouts
            )
        return self._engine

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def runtime() -> Runtime:
    return click.get_current_context().find_root().obj  # type: ignore[no-any-return]


def _setting(option: str, setting: str) -> Any:
    """An identity option, else its setting (`MDSTUDIO_TENANT`, `_USER`, `_ROLE`)."""
    given = click.get_current_context().find_root().meta.get(f"mdstudio.{option}")
    return given or getattr(runtime().settings, setting)


def tenant_id() -> uuid.UUID:
    """The tenant, from --tenant or MDSTUDIO_TENANT."""
    tenant = _setting("tenant", "tenant")
    if not tenant:
        raise InvalidInput("required (--tenant or MDSTUDIO_TENANT)", field="tenant")
    try:
        return uuid.UUID(str(tenant))
    except ValueError as exc:
        raise InvalidInput("must be a UUID", field="tenant") from exc


def identity() -> Identity:
    """The caller, from --tenant/--user/--role or MDSTUDIO_TENANT/_USER/_ROLE."""
    tenant = tenant_id()
    user = (_setting("user", "user") or "").strip()
    if not user:
        raise InvalidInput("required (--user or MDSTUDIO_USER)", field="user")
    raw_roles = _setting("roles", "role") or ()
    if isinstance(raw_roles, str):
        raw_roles = (raw_roles,)
    roles = frozenset(
        role.strip() for value in raw_roles for role in value.split(",") if role.strip()
    )
    return Identity(tenant_id=tenant, user=user, roles=roles)


def wants_json() -> bool:
    return bool(click.get_current_context().find_root().meta.get("mdstudio.json"))


# -- output --------------------------------------------------------------------------------


def jsonable(data: Any) -> Any:
    """Records (dataclasses, enums, UUIDs, datetimes) as plain JSON values."""
    return orjson.loads(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))


def emit(data: Any, human: Callable[[], None]) -> None:
    if wants_json():
        options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
        click.echo(orjson.dumps(data, option=options).decode())
    else:
        human()


def print_record(record: dict[str, Any], fields: Iterable[str] | None = None) -> None:
    keys = list(fields or record)
    width = max(len(key) for key in keys) + 2
    for key in keys:
        value = record.get(key)
        if isinstance(value, dict | list):
            value = json.dumps(value, default=str)
        click.echo(f"{key + ':':<{width}}{'' if value is None else value}".rstrip())


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)
    ]
    for line in [[column.upper() for column in columns], *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


# -- commands ------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@common_options
def cli() -> None:
    """mdstudio: a governed metadata catalog with approvals and data-quality profiling."""


@cli.group()
def db() -> None:
    """The metadata store's schema."""


@db.command("upgrade")
@common_options
def db_upgrade() -> None:
    """Create or migrate the schema (idempotent; SQLite or PostgreSQL)."""
    engine = runtime().engine
    migrations.upgrade(engine)
    revision = migrations.current_revision(engine)
    url = engine.url.render_as_string(hide_password=True)
    emit(
        {"revision": revision, "url": url},
        lambda: click.echo(f"schema at revision {revision} ({url})"),
    )


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
    found = approvals.list_approvals(
        runtime().uow(),
        identity(),
        status=ApprovalStatus(status) if status else None,
        entity_type=EntityType(entity_type) if entity_type else None,
        tier=Tier(tier) if tier else None,
        lane=Lane(lane) if lane else None,
        entity_key=entity_key,
        limit=limit,
        offset=offset,
        include_payload=True,
    )
    records = jsonable([listing.as_dict(include_payload=True) for listing in found])
    emit(
        records,
        lambda: print_table(
            records,
            (
                "id",
                "status",
                "entity_type",
                "entity_key",
                "tier",
                "lane",
                "required_role",
                "requested_by",
                "requested_at",
            ),
        ),
    )


@cli.group("metadata")
def metadata_group() -> None:
    """The live catalog."""


ENTITY_TYPE_OPTION = click.option(
    "--entity-type",
    type=click.Choice([t.value for t in CATALOG_ENTITY_TYPES]),
    default=EntityType.GLOBAL_METADATA.value,
    show_default=True,
)


@metadata_group.command("list")
@ENTITY_TYPE_OPTION
@click.option("--tier", type=click.Choice([t.value for t in Tier]))
@click.option("--status", type=click.Choice([s.value for s in EntityStatus]))
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@common_options
def metadata_list(
    entity_type: str, tier: str | None, status: str | None, limit: int, offset: int
) -> None:
    """Live entities of the tenant, by canonical key."""
    entities = [
        entity.as_dict()
        for entity in catalog.list_entities(
            runtime().uow(),
            identity(),
            EntityType(entity_type),
            tier=Tier(tier) if tier else None,
            status=EntityStatus(status) if status else None,
            limit=limit,
            offset=offset,
        )
    ]
    columns = ("canonical_key", "tier", "status", "version", "owner", "updated_at", "updated_by")
    emit(entities, lambda: print_table(entities, columns))


@metadata_group.command("show")
@click.argument("canonical_key")
@ENTITY_TYPE_OPTION
@common_options
def metadata_show(canonical_key: str, entity_type: str) -> None:
    """One live entity in full."""
    entity = catalog.get_entity(
        runtime().uow(), identity(), canonical_key, EntityType(entity_type)
    ).as_dict()
    emit(entity, lambda: print_record(entity))


@cli.group("events")
def events_group() -> None:
    """The event stream (transactional outbox)."""


@events_group.command("list")
@click.option("--after", type=int, default=0, show_default=True, help="Only events after this id.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--entity", "entity_key", help="Only events of this entity key.")
@common_options
def events_list(after: int, limit: int, entity_key: str | None) -> None:
    """The tenant's events, oldest first; continue with --after LAST_ID."""
    records = jsonable(
        catalog.list_events(
            runtime().uow(), identity(), after=after, limit=limit, entity_key=entity_key
        )
    )
    emit(
        records,
        lambda: print_table(
            records,
            ("id", "type", "entity_type", "entity_key", "actor", "occurred_at", "correlation_id"),
        ),
    )


@cli.group("profiles")
def profiles_group() -> None:
    """Data-quality profiles of bound entities."""


PROFILE_COLUMNS = (
    "name",
    "n",
    "non_null",
    "distinct",
    "valid",
    "completeness",
    "uniqueness",
    "validity",
    "score",
    "notes",
)


def print_profile(result: dict[str, Any]) -> None:
    print_record(
        result,
        (
            "canonical_key",
            "source",
            "table",
            "quality_score",
            "completeness",
            "uniqueness",
            "validity",
            "row_count",
            "score_note",
            "trigger",
            "approval_id",
            "sample",
            "duration_ms",
            "profiled_at",
            "mode",
            "watermark_before",
            "watermark_after",
            "rows_read",
            "full_reason",
        ),
    )
    click.echo("")
    print_table(result["columns"], PROFILE_COLUMNS)
    for warning in result.get("warnings", []):
        click.echo(f"warning: {warning}")
    check = result["check"]
    click.echo(f"check: {'passed' if check['passed'] else 'failed'} ({check['description']})")


@profiles_group.command("preview")
@click.argument("canonical_key", required=False)
@click.option("--approval", "approval_id", help="Profile the binding a pending request proposes.")
@click.option(
    "--backtest",
    is_flag=True,
    help="With --approval: score the last MDSTUDIO_BACKTEST_DAYS days under the live and the "
    "proposed rules (each item of a change set that changes rules).",
)
@common_options
def profiles_preview(canonical_key: str | None, approval_id: str | None, backtest: bool) -> None:
    """Profile a live entity (or a pending approval's binding) now; saves nothing. For a
    request's deciders (its role, or tenant_admin); for a live entity, a workflow role."""
    if bool(canonical_key) == bool(approval_id):
        raise InvalidInput("give either an entity key or --approval ID", field="entity")
    run = runtime()
    if backtest:
        if not approval_id:
            raise InvalidInput("--backtest needs --approval ID", field="backtest")
        evidence = backtests.approval_evidence(
            run.uow(), run.settings, identity(), approval_id, backtest=True
        )
        emit(evidence, lambda: backtest_text.echo(evidence, print_profile))
        return
    preview = (
        profiling.preview_approval(run.uow(), run.settings, identity(), approval_id)
        if approval_id
        else profiling.preview_entity(run.uow(), run.settings, identity(), canonical_key)  # type: ignore[arg-type]
    )
    result = {**preview.result.to_json(), "check": jsonable(preview.verdict.model_dump())}
    emit(result, lambda: print_profile(result))


@profiles_group.command("history")
@click.argument("canonical_key")
@click.option("--limit", type=int, default=20, show_default=True)
@common_options
def profiles_history(canonical_key: str, limit: int) -> None:
    """Saved profiles of an entity, newest first."""
    rows = jsonable(catalog.profile_history(runtime().uow(), identity(), canonical_key, limit))
    emit(
        rows,
        lambda: print_table(
            rows,
            (
                "created_at",
                "quality_score",
                "completeness",
                "uniqueness",
                "validity",
                "row_count",
                "mode",
                "watermark_after",
                "rows_read",
                "duration_ms",
                "trigger",
                "run_id",
                "full_reason",
            ),
        ),
    )


def _day(value: str | None, option: str) -> dt.date | None:
    """A --from/--to date (YYYY-MM-DD), else invalid input naming the option."""
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{value!r} is not a date (YYYY-MM-DD)", field=option) from exc


@profiles_group.command("days")
@click.argument("canonical_key")
@click.option("--from", "first", help="First day (YYYY-MM-DD), included.")
@click.option("--to", "last", help="Last day (YYYY-MM-DD), included.")
@common_options
def profiles_days(canonical_key: str, first: str | None, last: str | None) -> None:
    """Each day's counts and score of a field bound with binding.incremental partition day,
    oldest first (what rule backtests read)."""
    found = catalog.profile_days(
        runtime().uow(), identity(), canonical_key, _day(first, "from"), _day(last, "to")
    )
    records = [day.as_dict() for day in found]

    def human() -> None:
        rows = [
            {
                **record,
                **{
                    f"{name}.valid": column["valid"]
                    for name, column in record["columns"].items()
                    if column["valid"] is not None
                },
            }
            for record in records
        ]
        names = sorted({key for row in rows for key in row if key.endswith(".valid")})
        print_table(rows, ("day", "row_count", "quality_score", *names))

    emit(records, human)


@profiles_group.command("run")
@click.argument("canonical_key")
@click.option("--force", is_flag=True, help="Profile even within the minimum rerun interval.")
@click.option(
    "--full",
    is_flag=True,
    help="Read the whole table even where binding.incremental allows an incremental pass.",
)
@common_options
def profiles_run(canonical_key: str, force: bool, full: bool) -> None:
    """Ask Dagster for a profiling run of one entity (trigger `manual`).

    The request is an outbox event: approval_sensor picks it up, applies the cost guards
    (unless --force) and launches the run; follow it with `mdstudio audit KEY`. A table bound
    with binding.incremental is profiled incrementally where it can be; --full asks for a full
    profile (--force keeps its meaning: past the cost guard, incremental where it can be)."""
    event = profile_requests.request_profile(
        runtime().uow(), identity(), canonical_key, force=force, full=full
    )
    record = jsonable(event)
    flags = ", ".join(name for name, on in (("forced", force), ("full", full)) if on)
    emit(
        record,
        lambda: click.echo(
            f"profile of {canonical_key} requested (event {event.id}"
            f"{', ' + flags if flags else ''}); approval_sensor launches it on its next tick"
        ),
    )


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


@cli.group("policy")
def policy_group() -> None:
    """Who approves which lane and tier, per tenant."""


@policy_group.command("show")
@common_options
def policy_show() -> None:
    """The effective required role for every lane and tier, and how many approvers (`approvals`
    in --json; shown as `role x2` when more than one)."""
    effective = approvals.policy(runtime().uow(), identity())
    emit_policy(effective, two_person.policy_approvals(runtime().uow(), identity()))


def emit_policy(roles: dict[str, dict[str, str]], counts: dict[str, dict[str, int]]) -> None:
    """The effective policy: `{lane: {tier: role}}`, and `approvals`: `{lane: {tier: n}}`."""
    rows = [
        {
            "lane": lane,
            **{
                tier: role if counts[lane][tier] == 1 else f"{role} x{counts[lane][tier]}"
                for tier, role in tiers.items()
            },
        }
        for lane, tiers in roles.items()
    ]
    emit(
        {**roles, "approvals": counts},
        lambda: print_table(rows, ("lane", *[t.value for t in Tier])),
    )


@policy_group.command("set")
@click.option("--lane", required=True, type=click.Choice([lane.value for lane in Lane]))
@click.option(
    "--tier",
    type=click.Choice([t.value for t in Tier]),
    help="Only this tier (default: every tier of the lane).",
)
@click.option("--required-role", required=True)
@click.option(
    "--approvals",
    "approvals_count",
    type=int,
    help="How many distinct holders of the role must approve (1 to 10; default: unchanged, "
    "1 for a new override). Each approval before the last is an endorsement.",
)
@common_options
def policy_set(
    lane: str, tier: str | None, required_role: str, approvals_count: int | None
) -> None:
    """Override the role required on a lane, and optionally how many must approve (needs the
    tenant_admin role)."""
    chosen_tier = Tier(tier) if tier else None
    if approvals_count is None:
        effective = approvals.set_policy(
            runtime().uow(), identity(), Lane(lane), chosen_tier, required_role
        )
    else:
        effective = two_person.set_policy(
            runtime().uow(), identity(), Lane(lane), chosen_tier, required_role, approvals_count
        )
    emit_policy(effective, two_person.policy_approvals(runtime().uow(), identity()))


@cli.group("tokens")
def tokens_group() -> None:
    """API bearer tokens (administration: whoever reaches the store's database)."""


@tokens_group.command("create")
@click.option(
    "--expires-in",
    default="90d",
    show_default=True,
    help="Lifetime such as 90m, 12h, 30d or 2w, or never.",
)
@common_options
def tokens_create(expires_in: str) -> None:
    """Issue a token for --tenant, --user and --role; the token is printed once, only its hash
    is stored."""
    lifetime = tokens.parse_lifetime(expires_in)
    secret, token = tokens.create_token(runtime().uow(), identity(), lifetime)
    record = token_json(token)
    emit(
        {"token": secret, **record},
        lambda: (
            click.echo(secret),
            click.echo(
                f"token {record['id']} for {record['user']} (tenant {record['tenant']}, roles "
                f"{', '.join(record['roles']) or 'none'}, expires {record['expires'] or 'never'})"
                "; it is shown only this once",
                err=True,
            ),
        ),
    )


@tokens_group.command("list")
@common_options
def tokens_list() -> None:
    """Tokens (never their secrets), oldest first; --tenant T shows one tenant's."""
    tenant = click.get_current_context().find_root().meta.get("mdstudio.tenant")
    try:
        tenant_id = uuid.UUID(tenant) if tenant else None
    except ValueError as exc:
        raise InvalidInput("must be a UUID", field="tenant") from exc
    records = [token_json(token) for token in tokens.list_tokens(runtime().uow(), tenant_id)]
    emit(
        records,
        lambda: print_table(
            records, ("id", "tenant", "user", "roles", "created", "expires", "revoked")
        ),
    )


@tokens_group.command("revoke")
@click.argument("token_id")
@common_options
def tokens_revoke(token_id: str) -> None:
    """Revoke a token now; requests carrying it get 401 from then on."""
    record = token_json(tokens.revoke_token(runtime().uow(), token_id))
    emit(record, lambda: print_record(record))


# -- the outbox's consumers (operator commands: the store, no tenant identity) ---------------

CONSUMER_SUMMARY = ("name", "position", "lag_events", "lag_seconds", "dead_letters")
DEAD_LETTER_SUMMARY = (
    "id",
    "consumer",
    "event_id",
    "event_type",
    "status",
    "attempts",
    "failed_at",
    "error",
)
# What a replay would cause, per consumer: a consumer's planner (`--dry-run`) is given the
# runtime and the range; the pipelines add approval_sensor's (it needs Dagster).
ReplayPlanner = Callable[[Runtime, consumers.ReplayRange], dict[str, Any]]
DRY_RUNS: dict[str, ReplayPlanner] = {}
REPLAY_KEY = "replay:<id>"  # the id of the events.replayed event a real replay records


def operator() -> str:
    """Who runs an operator command: --user or MDSTUDIO_USER, else the login name."""
    given = (_setting("user", "user") or "").strip()
    return given or getpass.getuser()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@events_group.group("consumers", invoke_without_command=True)
@common_options
@click.pass_context
def events_consumers(ctx: click.Context) -> None:
    """Every consumer of the outbox (the sensors and the registered ones): position (the last
    event it handled), lag_events, lag_seconds (age of the oldest event it has not handled)
    and dead_letters."""
    if ctx.invoked_subcommand is not None:
        return
    found = consumers.list_consumers(runtime().uow(), _now())
    records = jsonable(found)
    emit(records, lambda: print_table(records, CONSUMER_SUMMARY))


@events_consumers.command("register")
@click.argument("name")
@click.option(
    "--from", "from_event_id", type=int, help="First event it handles (default: the next one)."
)
@common_options
def events_consumers_register(name: str, from_event_id: int | None) -> None:
    """Register an external consumer, at the outbox's head unless --from says otherwise."""
    cursor = consumers.register(runtime().uow(), name, from_event_id, _now())
    record = {"name": cursor.consumer, "position": cursor.position}
    emit(record, lambda: print_record(record))


@events_consumers.command("ack")
@click.argument("name")
@click.argument("event_id", type=int)
@common_options
def events_consumers_ack(name: str, event_id: int) -> None:
    """An external consumer has handled the stream through EVENT_ID (its cursor moves on)."""
    cursor = consumers.acknowledge(runtime().uow(), name, event_id, _now())
    record = {"name": cursor.consumer, "position": cursor.position}
    emit(record, lambda: print_record(record))


@events_consumers.command("unregister")
@click.argument("name")
@common_options
def events_consumers_unregister(name: str) -> None:
    """Forget an external consumer (it no longer holds retention back)."""
    consumers.unregister(runtime().uow(), name)
    emit({"name": name, "unregistered": True}, lambda: click.echo(f"{name} unregistered"))


@events_group.command("replay")
@click.option("--consumer", "name", required=True, help="The consumer to replay for.")
@click.option("--from", "first", type=int, required=True, help="First event id to handle again.")
@click.option("--to", "last", type=int, help="Last event id (default: where the consumer got).")
@click.option("--dry-run", is_flag=True, help="List what the replay would cause; change nothing.")
@common_options
def events_replay(name: str, first: int, last: int | None, dry_run: bool) -> None:
    """Move a consumer back so it handles events FROM to TO again, as a new pass: what it causes
    is keyed by the replay, so it happens once per replay even across a crash. Recorded as an
    `events.replayed` event."""
    run = runtime()
    if dry_run:
        planned = consumers.replay_range(run.uow(), name, first, last)
        planner = DRY_RUNS.get(name, _events_to_hand_again)
        record = jsonable(
            {
                "consumer": name,
                "from": planned.first,
                "to": planned.through,
                "dry_run": True,
                **planner(run, planned),
            }
        )
        emit(record, lambda: _print_dry_run(record))
        return
    event = consumers.replay(run.uow(), operator(), name, first, last, _now())
    record = jsonable({"replay_id": event.id, **event.payload})
    emit(
        record,
        lambda: click.echo(
            f"replay {event.id}: {name} handles events {first} to "
            f"{event.payload['to_event_id']} again (events.replayed {event.id})"
        ),
    )


def _events_to_hand_again(run: Runtime, planned: consumers.ReplayRange) -> dict[str, Any]:
    """An external consumer's dry run: the events it would be handed again."""
    found = [
        {"id": e.id, "type": e.type, "tenant_id": e.tenant_id, "entity_key": e.entity_key}
        for page in consumers.events_between(run.uow, planned.first, planned.through)
        for e in page
    ]
    return {"events": found}


def _deliveries_again(run: Runtime, planned: consumers.ReplayRange) -> dict[str, Any]:
    """notification_sensor's dry run: the deliveries the replay would create."""
    return {
        "deliveries": [
            line
            for page in consumers.events_between(run.uow, planned.first, planned.through)
            for line in notifications.would_deliver(run.uow(), page, REPLAY_KEY)
        ]
    }


DRY_RUNS[notifications.CONSUMER] = _deliveries_again


def _print_dry_run(record: dict[str, Any]) -> None:
    click.echo(
        f"dry run: a replay of {record['consumer']} from {record['from']} to {record['to']} "
        "would cause (nothing was changed):"
    )
    for name in ("runs", "deliveries", "events"):
        if name in record:
            click.echo(f"{name}: {len(record[name])}")
            for line in record[name]:
                click.echo("  " + json.dumps(line, default=str))
    if record.get("skipped"):
        click.echo(f"skipped by the cost guards: {json.dumps(record['skipped'])}")


@events_group.command("archive")
@click.option(
    "--before",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"]),
    help="Archive the events that happened before this date (UTC).",
)
@click.option("--to", "directory", required=True, help="Directory of the Parquet files.")
@common_options
def events_archive(before: dt.datetime, directory: str) -> None:
    """Move the events that happened before DATE to Parquet files under DIR (one per month),
    then out of the outbox in short batches; never an event a consumer has not handled: the
    consumer holding the archive back is named (exit 0: what could be archived was)."""
    cut = before.replace(tzinfo=dt.UTC)
    if cut > _now():
        raise InvalidInput("must not be in the future", field="before")
    report = retention.archive(
        runtime().uow, cut, Path(directory).expanduser().resolve(), operator(), _now()
    )
    record = jsonable(report)
    emit(record, lambda: _print_archive(report))


def _print_archive(report: retention.ArchiveReport) -> None:
    if report.events:
        click.echo(
            f"archived {report.events} events (ids {report.first_event_id} to "
            f"{report.last_event_id}) to {len(report.files)} files; removed {report.removed} "
            "from mdm_event"
        )
        for path in report.files:
            click.echo(f"  {path}")
    else:
        click.echo(f"nothing to archive (removed {report.removed} left from an earlier run)")
    if report.held_back_by:
        click.echo(
            f"held back by {report.held_back_by}, at event {report.held_back_at}: the events "
            "after it stay until it has handled them"
        )
    click.echo(f"the outbox keeps events from {report.horizon + 1} on")


@events_group.command("import")
@click.argument("directory")
@click.option(
    "--into",
    "target",
    default="events-import.db",
    show_default=True,
    help="Scratch database: a SQLite file path or a SQLAlchemy URL (never the live store).",
)
@common_options
def events_import(directory: str, target: str) -> None:
    """Load archived events (the Parquet files under DIR) into a scratch database's
    mdm_event table, for investigation; each event once however often it is imported."""
    folder = Path(directory).expanduser().resolve()
    if not folder.is_dir():
        raise InvalidInput(f"{directory} is not a directory", field="directory")
    report = retention.import_archive(folder, target, runtime().settings.store_url)
    record = jsonable(report)
    emit(
        record,
        lambda: click.echo(
            f"imported {report.events} events (ids {report.first_event_id} to "
            f"{report.last_event_id}) into {report.target}"
        ),
    )


@events_group.group("dead-letters", invoke_without_command=True)
@click.option("--consumer", "consumer_name", help="Only this consumer's.")
@click.option("--status", type=click.Choice([s.value for s in DeadLetterStatus]), default="dead")
@click.option("--limit", type=int, default=100, show_default=True)
@common_options
@click.pass_context
def events_dead_letters(
    ctx: click.Context, consumer_name: str | None, status: str, limit: int
) -> None:
    """Events a consumer failed on MDSTUDIO_CONSUMER_MAX_ATTEMPTS times and set aside (status
    dead unless --status says otherwise), with their scrubbed error."""
    if ctx.invoked_subcommand is not None:
        return
    found = consumers.dead_letters(runtime().uow(), consumer_name, status, limit=limit)
    records = [_dead_letter_record(letter) for letter in found]
    emit(records, lambda: print_table(records, DEAD_LETTER_SUMMARY))


def _dead_letter_record(letter: DeadLetter) -> dict[str, Any]:
    return jsonable({**dataclasses.asdict(letter), "event_type": letter.event.get("type")})


@events_dead_letters.command("retry")
@click.argument("letter_id", type=int)
@common_options
def events_dead_letters_retry(letter_id: int) -> None:
    """Hand a dead letter back: its consumer handles the event at its next pass."""
    record = _dead_letter_record(consumers.retry(runtime().uow(), operator(), letter_id, _now()))
    emit(record, lambda: print_record(record, DEAD_LETTER_SUMMARY))


@events_dead_letters.command("discard")
@click.argument("letter_id", type=int)
@click.option("--reason", required=True, help="Why it is dropped (kept on the record).")
@common_options
def events_dead_letters_discard(letter_id: int, reason: str) -> None:
    """Drop a dead letter on the record: who, when and why."""
    letter = consumers.discard(runtime().uow(), operator(), letter_id, reason, _now())
    record = _dead_letter_record(letter)
    emit(record, lambda: print_record(record, (*DEAD_LETTER_SUMMARY, "resolved_by", "reason")))


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


METRICS_OFF = (
    "mdstudio serve: metrics are off (/metrics answers 404). To turn them on, set "
    "MDSTUDIO_METRICS_TOKEN to a long random secret and have Prometheus send it as a bearer "
    "token (see deploy/prometheus/prometheus.yml)."
)
METRICS_ON = "mdstudio serve: metrics at /metrics, for a bearer of MDSTUDIO_METRICS_TOKEN."


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
def serve(host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json; with MDSTUDIO_API_DOCS=1 interactive docs
    at /docs and /redoc), the steward console (/ui/) and, with MDSTUDIO_METRICS_TOKEN set,
    Prometheus metrics (/metrics)."""
    import atexit
    import shutil
    import signal
    import tempfile

    # Before prometheus-client is imported anywhere: the workers count requests in files
    # here, which any worker's /metrics sums (a fresh directory, so no stale counts).
    counts = tempfile.mkdtemp(prefix="mdstudio-metrics-")
    atexit.register(shutil.rmtree, counts, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = counts
    # uvicorn shuts down gracefully on SIGTERM, then raises it again with the handler it found:
    # make that handler an exit, so the directory above is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    import uvicorn

    from mdstudio_core.entrypoints.http import metrics

    click.echo(METRICS_ON if metrics.enabled(runtime().settings) else METRICS_OFF, err=True)

    uvicorn.run(
        "mdstudio_core.entrypoints.http:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
    )


def token_json(token: ApiToken) -> dict[str, Any]:
    """A token as `tokens list --json` prints it (never its secret)."""
    return {
        "id": str(token.id),
        "tenant": str(token.tenant_id),
        "user": token.user,
        "roles": list(token.roles),
        "created": token.created_at.isoformat(),
        "expires": token.expires_at.isoformat() if token.expires_at else None,
        "revoked": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", field="file") from exc


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI, turning domain errors into their exit codes. The settings are read once,
    here: a malformed one stops every command (exit 1) with a message naming the variable.
    Every error text printed, and every log record, is scrubbed of credentials."""
    scrubbed = scrub  # until the settings, which know the configured passwords, are read
    try:
        settings = Settings.from_env()
        scrubbed = settings.scrub
        scrub_log_records(settings)
        run = Runtime(settings)
        try:
            cli.main(args=argv, prog_name="mdstudio", standalone_mode=False, obj=run)
        finally:
            run.close()
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MdstudioError as exc:
        kind = type(exc).__name__
        click.echo(f"error ({kind}): {scrubbed(str(exc))}", err=True)
        sys.exit(next((code for cls, code in EXIT_CODES.items() if isinstance(exc, cls)), 1))
    except ProfileError as exc:
        click.echo(f"error ({type(exc).__name__}): {scrubbed(str(exc))}", err=True)
        # The warehouse or its configuration failed (1); the binding names what is not
        # there or cannot be matched (2).
        sys.exit(1 if isinstance(exc, UnknownSource | SourceUnavailable | ProfileTimeout) else 2)
    except (OperationalError, ProgrammingError) as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            click.echo("error: the store has no schema yet: run `mdstudio db upgrade`", err=True)
        else:
            click.echo(f"error: database unavailable: {scrubbed(str(exc.orig))}", err=True)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
