"""The `mdstudio` console script: the core CLI plus the commands that read Dagster.

mdstudio_core never imports dagster, so commands that need the Dagster instance are added here,
and import dagster only when they run."""

import contextlib
import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import click

from mdstudio_core.entrypoints.cli import (
    DRY_RUNS,
    REPLAY_KEY,
    Runtime,
    cli,
    common_options,
    emit,
    main,
    runtime,
    tenant_id,
)
from mdstudio_core.service_layer import consumers, profile_requests

__all__ = ["main"]


@contextlib.contextmanager
def dagster_instance(run: Runtime) -> Iterator[Any]:
    """The Dagster instance of this deployment, or None where there is none."""
    import dagster as dg

    from mdstudio_pipelines.lib.instance import dagster_home

    home = dagster_home(run.settings)
    if not (home / "dagster.yaml").exists():
        yield None
        return
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def approval_runs_again(run: Runtime, planned: consumers.ReplayRange) -> dict[str, Any]:
    """approval_sensor's dry run: the runs a replay would request, page by page as its ticks
    would, after the cost guards (a run launched earlier in the replay counts for the later
    pages, as it would), and what the guards would skip."""
    from mdstudio_pipelines.defs.run_planning import pack_runs, recently_requested

    settings = run.settings
    now = dt.datetime.now(dt.UTC)
    found: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    requested: dict[tuple[Any, str], dt.datetime] = {}
    with dagster_instance(run) as instance:
        pages = consumers.events_between(
            run.uow, planned.first, planned.through, settings.sensor_max_events
        )
        for events in pages:
            candidates = profile_requests.candidates_from_events(events)
            in_flight = (
                recently_requested(instance, [c.entity for c in candidates], now, settings)
                if instance is not None and candidates
                else {}
            )
            plan = profile_requests.plan(
                run.uow(),
                candidates,
                now=now,
                min_rerun=settings.min_rerun,
                recently_requested={**in_flight, **requested},
            )
            skipped.update(skip.reason.value for skip in plan.skipped)
            for planned_run in pack_runs(plan.batches, settings.tables_per_run, key=REPLAY_KEY):
                tags = planned_run.request.tags
                found.append(
                    {
                        "run_key": planned_run.request.run_key,
                        "tenant_id": tags["mdstudio/tenant"],
                        "tables": [batch.table_name for batch in planned_run.batches],
                        "entities": [k for batch in planned_run.batches for k in batch.keys],
                        "priority": tags["mdstudio/priority"],
                    }
                )
                for batch in planned_run.batches:
                    requested.update({(batch.tenant_id, key): now for key in batch.keys})
    return {
        "runs": found,
        "skipped": dict(skipped),
        "in_flight_runs_read": instance is not None,
    }


DRY_RUNS["approval_sensor"] = approval_runs_again  # defs.sensors.approvals.CONSUMER


@cli.command("audit")
@click.argument("canonical_key")
@common_options
def audit(canonical_key: str) -> None:
    """An entity's timeline from the Dagster event log, oldest first: approval events,
    profiling decisions and skips, materializations with scores, check results."""
    import dagster as dg

    from mdstudio_pipelines.lib.audit import describe, timeline
    from mdstudio_pipelines.lib.instance import dagster_home

    home = dagster_home(runtime().settings)
    if not (home / "dagster.yaml").exists():
        raise click.ClickException(
            f"no Dagster instance at {home}: set DAGSTER_HOME (make dev prepares one)"
        )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        entries = timeline(instance, tenant_id(), canonical_key)
    emit(entries, lambda: click.echo("\n".join(map(describe, entries)) or "(no events)"))
