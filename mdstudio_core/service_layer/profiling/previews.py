"""Previews: profile one binding now, as evidence for a decider, and save nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from mdstudio_core.adapters import warehouse
from mdstudio_core.config import Settings
from mdstudio_core.domain.approval_policy import check_may_preview_entity
from mdstudio_core.domain.errors import InvalidInput, NotFound
from mdstudio_core.domain.model import (
    Binding,
    EntityType,
    Identity,
    Tier,
    Trigger,
    stored_binding,
)
from mdstudio_core.domain.quality import (
    CheckVerdict,
    ProfileResult,
    quality_gate,
)
from mdstudio_core.service_layer.approvals import check_source_access, get_judged
from mdstudio_core.service_layer.profiling.measuring import (
    BoundEntity,
    EngineFor,
    profile_table,
    source_engines,
    table_label,
)
from mdstudio_core.service_layer.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class Preview:
    """A profile taken now and the verdict the tier's check would give it."""

    result: ProfileResult
    verdict: CheckVerdict


@dataclass(frozen=True)
class PreviewPlan:
    """What a preview profiles, once the caller may see it: found in the store, run against
    the warehouse (`run_preview`), so an entry point can run the two on different threads."""

    tenant_id: uuid.UUID
    canonical_key: str
    binding: Binding
    tier: Tier
    approval_id: uuid.UUID | None


def plan_entity_preview(
    uow: UnitOfWork, settings: Settings, identity: Identity, canonical_key: str
) -> PreviewPlan:
    """The preview of a live entity's binding, for a holder of a workflow role."""
    check_may_preview_entity(identity)
    with uow:
        entity = uow.entities.get(EntityType.GLOBAL_METADATA, identity.tenant_id, canonical_key)
    if entity is None:
        raise NotFound(f"GLOBAL_METADATA {canonical_key} not found")
    return _plan(settings, identity, canonical_key, entity.binding, entity.tier, None)


def plan_approval_preview(
    uow: UnitOfWork, settings: Settings, identity: Identity, approval_id: uuid.UUID | str
) -> PreviewPlan:
    """The preview of the binding a pending request proposes, for those who may decide it
    (`Approval.check_may_preview`, on the role judged against the live state)."""
    approval = get_judged(uow, identity, approval_id)
    approval.check_may_preview(identity)
    if approval.entity_type is not EntityType.GLOBAL_METADATA:
        raise InvalidInput("only GLOBAL_METADATA requests carry a binding", field="approval_id")
    raw = approval.payload.get("binding")
    return _plan(
        settings,
        identity,
        approval.entity_key,
        stored_binding(raw) if raw else None,
        approval.tier,
        approval.id,
    )


def _plan(
    settings: Settings,
    identity: Identity,
    key: str,
    binding: Binding | None,
    tier: Tier,
    approval_id: uuid.UUID | None,
) -> PreviewPlan:
    if binding is None:
        raise InvalidInput(f"{key} has no binding to profile", field="binding")
    check_source_access(settings, identity, binding)
    return PreviewPlan(identity.tenant_id, key, binding, tier, approval_id)


def run_preview(
    settings: Settings, plan: PreviewPlan, engine_for: EngineFor | None = None
) -> Preview:
    """Profile the planned binding now and save nothing, within the tier's limits and at most
    `MDSTUDIO_PREVIEW_TIMEOUT_SECONDS` (`Settings.preview_limits`)."""
    limits = settings.preview_limits(plan.tier)
    entity = BoundEntity(
        plan.canonical_key,
        plan.binding,
        tenant_id=plan.tenant_id,
        approval_id=plan.approval_id,
        trigger=Trigger.PREVIEW,
    )
    try:
        [result] = profile_table(
            [entity], limits=limits, engine_for=engine_for or source_engines(settings)
        )
    except warehouse.ProfileTimeout as exc:
        if limits.timeout_s != settings.preview_timeout_seconds:
            raise  # the tier's own, shorter timeout: its message says so
        raise warehouse.ProfileTimeout(
            f"the preview of {table_label(plan.binding)} ran past "
            f"{settings.preview_timeout_seconds:g} s (MDSTUDIO_PREVIEW_TIMEOUT_SECONDS) and was "
            "cancelled; nothing was saved"
        ) from exc
    verdict = quality_gate(
        plan.tier, result.quality_score, result.score_note, settings.quality_thresholds
    )
    return Preview(result, verdict)


def preview_entity(
    uow: UnitOfWork,
    settings: Settings,
    identity: Identity,
    canonical_key: str,
    engine_for: EngineFor | None = None,
) -> Preview:
    """Profile a live entity's binding now and save nothing."""
    plan = plan_entity_preview(uow, settings, identity, canonical_key)
    return run_preview(settings, plan, engine_for)


def preview_approval(
    uow: UnitOfWork,
    settings: Settings,
    identity: Identity,
    approval_id: uuid.UUID | str,
    engine_for: EngineFor | None = None,
) -> Preview:
    """Profile the binding a pending approval proposes, before anyone approves it."""
    plan = plan_approval_preview(uow, settings, identity, approval_id)
    return run_preview(settings, plan, engine_for)
