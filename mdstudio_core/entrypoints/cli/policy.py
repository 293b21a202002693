"""`mdstudio policy`: who approves which lane and tier, per tenant."""

from __future__ import annotations

import click

from mdstudio_core.domain.model import Lane, Tier
from mdstudio_core.entrypoints.cli.output import emit, print_table
from mdstudio_core.entrypoints.cli.plumbing import cli, common_options, identity, runtime
from mdstudio_core.service_layer import approvals, two_person


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
