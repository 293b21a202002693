"""`mdstudio tokens`: API bearer tokens."""

from __future__ import annotations

import uuid
from typing import Any

import click

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.model import ApiToken
from mdstudio_core.entrypoints.cli.output import emit, print_record, print_table
from mdstudio_core.entrypoints.cli.plumbing import cli, common_options, identity, runtime
from mdstudio_core.service_layer import tokens


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
