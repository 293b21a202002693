"""`mdstudio db`: the metadata store's schema."""

from __future__ import annotations

import click

from mdstudio_core.adapters import migrations
from mdstudio_core.entrypoints.cli.output import emit
from mdstudio_core.entrypoints.cli.plumbing import cli, common_options, runtime


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
