"""`mdstudio profiles`: data-quality profiles of bound entities."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.entrypoints import backtest_text
from mdstudio_core.entrypoints.cli.output import emit, jsonable, print_record, print_table
from mdstudio_core.entrypoints.cli.plumbing import cli, common_options, identity, runtime
from mdstudio_core.service_layer import backtest as backtests
from mdstudio_core.service_layer import catalog, profile_requests, profiling


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
            run.uow(),
            run.settings,
            identity(),
            approval_id,
            backtest=True,
            engine_for=run.warehouse_engines,
        )
        emit(evidence, lambda: backtest_text.echo(evidence, print_profile))
        return
    preview = (
        profiling.preview_approval(
            run.uow(), run.settings, identity(), approval_id, run.warehouse_engines
        )
        if approval_id
        else profiling.preview_entity(
            run.uow(),
            run.settings,
            identity(),
            canonical_key,  # type: ignore[arg-type]
            run.warehouse_engines,
        )
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
