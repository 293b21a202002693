"""The `mdstudio` console script: the core CLI plus the commands that read Dagster.

mdstudio_core never imports dagster, so commands that need the Dagster instance are added here,
and import dagster only when they run."""

import click

from mdstudio_core.entrypoints.cli import cli, common_options, emit, main, runtime, tenant_id

__all__ = ["main"]


@cli.command("audit")
@click.argument("canonical_key")
@common_options
def audit(canonical_key: str) -> None:
    """An entity's timeline from the Dagster event log, oldest first: approval events,
    profiling decisions and skips, materializations with scores, check results."""
    import dagster as dg

    from mdstudio_pipelines.audit import describe, timeline
    from mdstudio_pipelines.instance import dagster_home

    home = dagster_home(runtime().settings)
    if not (home / "dagster.yaml").exists():
        raise click.ClickException(
            f"no Dagster instance at {home}: set DAGSTER_HOME (make dev prepares one)"
        )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        entries = timeline(instance, tenant_id(), canonical_key)
    emit(entries, lambda: click.echo("\n".join(map(describe, entries)) or "(no events)"))
