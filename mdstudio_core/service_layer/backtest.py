"""The backtest of a pending request that changes a bound field's rules or binding: its last
`MDSTUDIO_BACKTEST_DAYS` days scored under the live and under the proposed rules
(`domain.backtest`), part of the evidence a decider sees (`profiles preview --approval ID
--backtest`, `GET /approvals/{id}/preview?backtest=true`, the console's request page).

Like a preview, it is found in the store first (`plan_evidence`, on the store's threads) and
run against the warehouse after (`run_evidence`, on the previews' own), and it saves nothing.
A daily table (`binding.incremental` with `partition: day`) gives its days in one grouped read;
any other table gives today only, from one profile of it under both sets of rules.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from mdstudio_core.adapters import backtest_sql
from mdstudio_core.adapters.incremental import signature
from mdstudio_core.config import Settings
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.backtest import (
    NEEDS_ONE_TABLE,
    NEEDS_PARTITION,
    Backtest,
    BacktestDay,
    ScoredRule,
    backtest,
    day_score,
)
from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.model import (
    Binding,
    ColumnRule,
    EntityType,
    Identity,
    Incremental,
    Tier,
    Trigger,
    stored_binding,
)
from mdstudio_core.service_layer import change_sets, profiling
from mdstudio_core.service_layer.approvals import check_source_access, get_judged
from mdstudio_core.service_layer.unit_of_work import UnitOfWork


@dataclasses.dataclass(frozen=True)
class BacktestPlan:
    """One field's rule change to backtest: its live and proposed bindings (`item`: its number
    in a change set, None for a single request)."""

    tenant_id: uuid.UUID
    canonical_key: str
    tier: Tier
    live: Binding
    proposed: Binding
    item: int | None = None


@dataclasses.dataclass(frozen=True)
class EvidencePlan:
    """What the evidence of a request reads: the preview of its binding (None for a change
    set, which has none of its own) and the backtests asked for."""

    approval_id: uuid.UUID
    preview: profiling.PreviewPlan | None
    backtests: tuple[BacktestPlan, ...]


def rule_change(approval: Approval) -> tuple[Binding, Binding] | None:
    """The live and the proposed binding of a request that changes a bound field's binding
    or rules (and keeps it bound and active), else None."""
    if approval.binding_change() != "rebound":
        return None
    assert approval.current_state is not None
    return (
        stored_binding(approval.current_state["binding"]),
        stored_binding(approval.payload["binding"]),
    )


def plan_backtests(
    uow: UnitOfWork, settings: Settings, identity: Identity, approval_id: uuid.UUID | str
) -> list[BacktestPlan]:
    """The backtests of a request (each item of a change set that changes a bound field's
    rules), for those who may decide it. None to run is invalid input naming `backtest`."""
    approval = get_judged(uow, identity, approval_id)
    approval.check_may_preview(identity)
    if approval.entity_type is EntityType.CHANGE_SET:
        change_set, _ = change_sets.load(uow, approval)
        numbered: Sequence[tuple[int | None, Approval]] = list(enumerate(change_set.items, 1))
    else:
        numbered = [(None, approval)]
    plans = []
    for number, item in numbered:
        change = rule_change(item)
        if change is None:
            continue
        for binding in change:
            check_source_access(settings, identity, binding)
        plans.append(
            BacktestPlan(identity.tenant_id, item.entity_key, item.tier, *change, item=number)
        )
    if not plans:
        raise InvalidInput(
            f"request {approval.id} changes no bound field's rules or binding: there is nothing "
            "to backtest",
            field="backtest",
        )
    return plans


def run_backtest(
    settings: Settings, plan: BacktestPlan, engine_for: profiling.EngineFor | None = None
) -> Backtest:
    """Score the field's days under both sets of rules (today only without a day partition
    on one table), within the preview's limits, and judge them."""
    engine_for = engine_for or profiling.source_engines(settings)
    daily = _daily(plan.live, plan.proposed)
    if daily is None:
        days = [_today(settings, plan, engine_for)]
        one_table = profiling.table_key(plan.live) == profiling.table_key(plan.proposed)
        needs = NEEDS_PARTITION if one_table else NEEDS_ONE_TABLE
        partition = None
    else:
        days, needs, partition = _days(settings, plan, daily, engine_for), None, daily.column
    return backtest(
        days,
        tier=plan.tier,
        thresholds=settings.quality_thresholds,
        policy=settings.incident_policy,
        window_days=settings.backtest_days,
        tenant_id=plan.tenant_id,
        canonical_key=plan.canonical_key,
        partition=partition,
        needs=needs,
    )


def _daily(live: Binding, proposed: Binding) -> Incremental | None:
    """The day partition both bindings' days come from: declared (by the proposed binding,
    else the live one) on the table both are bound to."""
    if profiling.table_key(live) != profiling.table_key(proposed):
        return None
    for binding in (proposed, live):
        if binding.incremental is not None and binding.incremental.partition == "day":
            return binding.incremental
    return None


def _days(
    settings: Settings,
    plan: BacktestPlan,
    incremental: Incremental,
    engine_for: profiling.EngineFor,
) -> list[BacktestDay]:
    source, schema, table = profiling.table_key(plan.proposed)
    rules = _distinct_rules([*plan.live.columns, *plan.proposed.columns])
    window = backtest_sql.read_days(
        engine_for(source),
        table,
        rules,
        incremental,
        days=settings.backtest_days,
        schema=schema,
        source=source,
        timeout_s=settings.preview_limits(plan.tier).timeout_s,
    )
    scored = {rule.key: rule for rule in window.rules}

    def of(binding: Binding) -> list[ScoredRule]:
        return [scored[signature(rule)] for rule in binding.columns]

    return [
        BacktestDay(day.day, day_score(of(plan.live), day), day_score(of(plan.proposed), day))
        for day in window.days
    ]


def _distinct_rules(rules: Sequence[ColumnRule]) -> list[ColumnRule]:
    seen: dict[str, ColumnRule] = {}
    for rule in rules:
        seen.setdefault(signature(rule), rule)
    return list(seen.values())


def _today(settings: Settings, plan: BacktestPlan, engine_for: profiling.EngineFor) -> BacktestDay:
    """Today's score under each set of rules: one profile of the table (two when the bindings
    name different tables), saving nothing."""
    limits = settings.preview_limits(plan.tier)
    live, proposed = (
        profiling.BoundEntity(
            plan.canonical_key, binding, tenant_id=plan.tenant_id, trigger=Trigger.PREVIEW
        )
        for binding in (plan.live, plan.proposed)
    )
    if profiling.table_key(plan.live) == profiling.table_key(plan.proposed):
        scored = profiling.profile_table([live, proposed], limits=limits, engine_for=engine_for)
    else:
        scored = [
            *profiling.profile_table([live], limits=limits, engine_for=engine_for),
            *profiling.profile_table([proposed], limits=limits, engine_for=engine_for),
        ]
    return BacktestDay(
        dt.datetime.now(dt.UTC).date(), scored[0].quality_score, scored[1].quality_score
    )


# -- the evidence of a request: its preview, and its backtests ---------------------------------


def plan_evidence(
    uow: UnitOfWork,
    settings: Settings,
    identity: Identity,
    approval_id: uuid.UUID | str,
    *,
    backtest: bool,
) -> EvidencePlan:
    """The preview of a request's binding and, with `backtest`, its backtests; a change set
    has no binding of its own: its items' backtests only."""
    approval = get_judged(uow, identity, approval_id)
    preview = (
        None
        if backtest and approval.entity_type is EntityType.CHANGE_SET
        else profiling.plan_approval_preview(uow, settings, identity, approval_id)
    )
    plans = plan_backtests(uow, settings, identity, approval_id) if backtest else []
    return EvidencePlan(approval.id, preview, tuple(plans))


def run_evidence(
    settings: Settings, plan: EvidencePlan, engine_for: profiling.EngineFor | None = None
) -> dict[str, Any]:
    """The evidence as JSON: the preview with its check and `backtest`, or for a change set
    its `items` that change rules, each with its backtest."""
    backtests = [
        {
            "item": found.item,
            "entity_key": found.canonical_key,
            "backtest": run_backtest(settings, found, engine_for).to_json(),
        }
        for found in plan.backtests
    ]
    if plan.preview is None:
        return {"approval_id": str(plan.approval_id), "items": backtests}
    preview = profiling.run_preview(settings, plan.preview, engine_for)
    result = {
        **preview.result.to_json(),
        "check": preview.verdict.model_dump(mode="json"),
    }
    if backtests:
        result["backtest"] = backtests[0]["backtest"]
    return result


def approval_evidence(
    uow: UnitOfWork,
    settings: Settings,
    identity: Identity,
    approval_id: uuid.UUID | str,
    *,
    backtest: bool,
    engine_for: profiling.EngineFor | None = None,
) -> dict[str, Any]:
    """`plan_evidence` then `run_evidence`, on one thread (the CLI)."""
    plan = plan_evidence(uow, settings, identity, approval_id, backtest=backtest)
    return run_evidence(settings, plan, engine_for)
