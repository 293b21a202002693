"""The plumbing every `mdstudio` command stands on: the identity options, the runtime (settings
read once, the store), and domain errors turned into the exit codes the package's docstring
lists. What a command prints is `output`'s."""

from __future__ import annotations

import getpass
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from mdstudio_core import bootstrap
from mdstudio_core.adapters.warehouse import (
    ProfileError,
    ProfileTimeout,
    SourceUnavailable,
    UnknownSource,
)
from mdstudio_core.config import Settings, scrub
from mdstudio_core.domain.errors import Conflict, Forbidden, InvalidInput, MdstudioError, NotFound
from mdstudio_core.domain.model import Identity
from mdstudio_core.entrypoints.logs import scrub_log_records
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
    """What one invocation works with: the settings, read once at start, and the store and
    warehouses they name, wired by `bootstrap` as the HTTP app and Dagster wire them."""

    settings: Settings
    _engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = bootstrap.store_engine(self.settings)
        return self._engine

    @property
    def warehouse_engines(self) -> bootstrap.WarehouseEngines:
        return bootstrap.warehouse_engines(self.settings)

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


def operator() -> str:
    """Who runs an operator command: --user or MDSTUDIO_USER, else the login name."""
    given = (_setting("user", "user") or "").strip()
    return given or getpass.getuser()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@common_options
def cli() -> None:
    """mdstudio: a governed metadata catalog with approvals and data-quality profiling."""


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI, turning domain errors into their exit codes. The settings are read once,
    here: a malformed one stops every command (exit 1) with a message naming the variable.
    Every error text printed, and every log record, is scrubbed of credentials."""
    scrubbed = scrub  # until the settings, which know the configured passwords, are read
    try:
        settings = bootstrap.read_settings()
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
