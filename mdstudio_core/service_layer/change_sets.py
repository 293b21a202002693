"""Change-set commands: submit a set all or nothing, show it with its items' changes and the
KPIs they endanger, and apply a whole set in one transaction. The rules are the domain's
(`mdstudio_core.domain.change_sets`, and `domain.approvals` for each item); reject and cancel
need nothing of their own (a set is an approval request like any other), and approving one
goes through `approvals.approve`, which hands a set to `approve_loaded`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError

from mdstudio_core.config import Settings
from mdstudio_core.domain import clock
from mdstudio_core.domain.approval_requests import parse_approval_id, validate_request
from mdstudio_core.domain.approvals import Approval
from mdstudio_core.domain.change_sets import (
    ChangeSet,
    InvalidItems,
    ItemError,
    Unreadable,
    check_size,
    check_title,
    decisive_cell,
    duplicate_errors,
    item_error,
)
from mdstudio_core.domain.errors import Conflict, InvalidInput, NotFound
from mdstudio_core.domain.model import (
    ApprovalRequest,
    Binding,
    EntityStatus,
    EntityType,
    Identity,
    LiveEntity,
)
from mdstudio_core.service_layer import lineage, two_person
from mdstudio_core.service_layer.approvals import check_source_access
from mdstudio_core.service_layer.unit_of_work import UnitOfWork

Live = dict[tuple[EntityType, str], LiveEntity]


def submit(
    uow: UnitOfWork, identity: Identity, title: Any, requests: Any, settings: Settings
) -> ChangeSet:
    """Record a pending change set of `requests` (1 to 10,000), all or nothing: every item is
    validated as a single request would be, and any invalid item fails the whole set with
    every bad item listed (`InvalidItems`); nothing is stored then."""
    title = check_title(title)
    validated = _validate(identity, check_size(requests), settings)
    now = clock.now()
    with uow:
        live = _live(uow, identity.tenant_id, [(r.entity_type, _key(r)) for r, _ in validated])
        overrides = uow.policies.overrides(identity.tenant_id)
        counts = uow.policies.approval_counts(identity.tenant_id)
        entities = [live.get((r.entity_type, _key(r))) for r, _ in validated]
        breaks = lineage.breaks_tier1_kpis(
            uow, identity.tenant_id, [(e, s) for e, (_, s) in zip(entities, validated, strict=True)]
        )
        items, cells, errors = [], [], []
        for number, ((request, state), entity, breaking) in enumerate(
            zip(validated, entities, breaks, strict=True), 1
        ):
            try:
                item = Approval.submit(
                    request,
                    state,
                    identity,
                    entity,
                    overrides,
                    now,
                    breaks_tier1_kpi=breaking,
                    approval_counts=counts,
                )
            except InvalidInput as exc:  # a rule that depends on the live entity (draft lane)
                errors.append(item_error(number, exc))
                continue
            items.append(item)
            cells.append(decisive_cell(item, breaking))
        if errors:
            raise InvalidItems(errors)
        change_set = ChangeSet.submit(title, items, cells, identity, overrides, counts, now)
        uow.approvals.add(change_set.approval)
        uow.change_sets.add_items(change_set.approval, change_set.items)
        uow.commit()
    return change_set


def show(
    uow: UnitOfWork, identity: Identity, change_set_id: uuid.UUID | str, settings: Settings
) -> dict[str, Any]:
    """A change set as `GET /change-sets/{id}` shows it (a request that is no set: not found)."""
    change_set_id = parse_approval_id(change_set_id)
    with uow:
        approval = uow.approvals.get(identity.tenant_id, change_set_id)
    if approval is None or approval.entity_type is not EntityType.CHANGE_SET:
        raise NotFound(f"change set {change_set_id} not found")
    return show_loaded(uow, settings, approval)


def show_loaded(uow: UnitOfWork, settings: Settings, approval: Approval) -> dict[str, Any]:
    """The set's request, its title, its items with their changes (and, while pending, whether
    each is stale), and `impact`: every KPI any item endangers."""
    change_set, live = load(uow, approval)
    record = change_set.as_dict(live)
    record["impact"] = lineage.combined_impact(uow, settings, approval.tenant_id, change_set.items)
    return record


def load(uow: UnitOfWork, approval: Approval) -> tuple[ChangeSet, Live]:
    """The set of a CHANGE_SET request, with the live entities of its items."""
    with uow:
        items = uow.change_sets.items(approval)
        live = _live(uow, approval.tenant_id, [(i.entity_type, i.entity_key) for i in items])
    return ChangeSet(approval, tuple(items)), live


def item_counts(
    uow: UnitOfWork, identity: Identity, approval_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """How many items each change set among these requests of the caller's tenant holds."""
    with uow:
        return uow.change_sets.counts(identity.tenant_id, approval_ids)


def approve_loaded(
    uow: UnitOfWork, identity: Identity, approval: Approval, reason: str | None, settings: Settings
) -> Approval:
    """Approve a set whose request `approvals.approve` has loaded and locked, in its open unit
    of work: an endorsement while it needs more approvers, else every item applied, the
    dependent KPIs' trust recomputed once, the decision and every item's events (in item
    order) stored, in one transaction."""
    change_set, live = load(uow, approval)
    change_set = _judged_again(uow, change_set, live)
    decided, events = change_set.approve(identity, live, clock.now(), reason)
    if decided.pending:
        return two_person.record_endorsement(uow, decided.approval, events)
    _apply(uow, change_set, decided)
    _refresh_trust(uow, settings, decided)
    if not uow.approvals.record_decision(decided.approval):
        raise Conflict(f"approval {approval.id} was decided concurrently")
    uow.events.append(events)
    uow.commit()
    return decided.approval


def judged_again(uow: UnitOfWork, approval: Approval) -> ChangeSet:
    """The set of a CHANGE_SET request, with the role its decision needs now (in the caller's
    open unit of work)."""
    change_set, live = load(uow, approval)
    return _judged_again(uow, change_set, live)


def _judged_again(uow: UnitOfWork, change_set: ChangeSet, live: Live) -> ChangeSet:
    tenant_id = change_set.approval.tenant_id
    items = change_set.items
    breaks = lineage.breaks_tier1_kpis(
        uow,
        tenant_id,
        [(live.get((item.entity_type, item.entity_key)), item.payload) for item in items],
    )
    return change_set.judged_again(
        live,
        uow.policies.overrides(tenant_id),
        uow.policies.approval_counts(tenant_id),
        breaks,
    )


def _validate(
    identity: Identity, requests: list[Any], settings: Settings
) -> list[tuple[ApprovalRequest, dict[str, Any]]]:
    """Every item parsed as a request (before the store), or `InvalidItems` naming each bad
    one and every entity changed twice."""
    validated: list[tuple[ApprovalRequest, dict[str, Any]] | None] = []
    errors: list[ItemError] = []
    for number, raw in enumerate(requests, 1):
        try:
            if isinstance(raw, Unreadable):
                raise InvalidInput(raw.reason, field="request")
            request, state = validate_request(raw, settings.max_payload_bytes)
            if state.get("binding"):
                check_source_access(settings, identity, Binding.model_validate(state["binding"]))
        except InvalidInput as exc:
            errors.append(item_error(number, exc))
            validated.append(None)
            continue
        validated.append((request, state))
    errors += duplicate_errors(
        [(found[0].entity_type, _key(found[0])) if found else None for found in validated]
    )
    if errors:
        raise InvalidItems(sorted(errors, key=lambda error: error.item))
    return [found for found in validated if found is not None]


def _key(request: ApprovalRequest) -> str:
    assert request.entity_key is not None  # `validate_request` sets it
    return request.entity_key


def _live(uow: UnitOfWork, tenant_id: uuid.UUID, keys: Iterable[tuple[EntityType, str]]) -> Live:
    """The live entities among `keys`, by (type, key), a bounded query per type and 500 keys."""
    by_type: dict[EntityType, list[tuple[uuid.UUID, str]]] = {}
    for entity_type, key in keys:
        by_type.setdefault(entity_type, []).append((tenant_id, key))
    live: Live = {}
    for entity_type, wanted in by_type.items():
        for (_tenant, key), entity in uow.entities.get_many(entity_type, wanted).items():
            live[(entity_type, key)] = entity
    return live


def _apply(uow: UnitOfWork, submitted: ChangeSet, decided: ChangeSet) -> None:
    """Write every item's approved state, inserts and compare-and-set updates batched per
    entity type, inside a savepoint: when an entity moved on after the staleness check (a
    concurrent approval), the writes are undone and the conflict names its item."""
    approval = decided.approval
    actor, at = approval.decided_by, approval.decided_at
    assert actor is not None and at is not None
    new: dict[EntityType, list[tuple[uuid.UUID, dict[str, Any]]]] = {}
    changed: dict[EntityType, list[tuple[str, int, dict[str, Any]]]] = {}
    for item in decided.items:
        if item.base_version is None:
            new.setdefault(item.entity_type, []).append(
                (item.entity_id or uuid.uuid4(), item.payload)
            )
        else:
            changed.setdefault(item.entity_type, []).append(
                (item.entity_key, item.base_version, item.payload)
            )
    savepoint = uow.connection.begin_nested()
    try:
        for entity_type, entities in new.items():
            uow.entities.insert_many(entity_type, approval.tenant_id, entities, actor, at)
        written = sum(
            uow.entities.update_many(entity_type, approval.tenant_id, rows, actor, at)
            for entity_type, rows in changed.items()
        )
    except IntegrityError:  # an entity created by a concurrent approval since the check
        savepoint.rollback()
        raise Conflict(_moved_on(uow, submitted)) from None
    if written != sum(len(rows) for rows in changed.values()):
        savepoint.rollback()
        raise Conflict(_moved_on(uow, submitted))
    savepoint.commit()


def _moved_on(uow: UnitOfWork, submitted: ChangeSet) -> str:
    """The stale items of a set whose write lost a race, as the staleness check names them."""
    items = submitted.items
    live = _live(uow, submitted.approval.tenant_id, [(i.entity_type, i.entity_key) for i in items])
    stale = submitted.stale_items(live)
    return (
        "\n".join(
            f"item {number}: {submitted.deciding(items[number - 1]).stale_message()}"
            for number in stale
        )
        or f"approval {submitted.approval.id}: an item's entity changed concurrently; try again"
    )


def _refresh_trust(uow: UnitOfWork, settings: Settings, decided: ChangeSet) -> None:
    """As one approval does, once for the whole set: the KPIs depending on a field whose
    binding an item changed get their trust again, and each approved active KPI its first."""
    tenant_id = decided.approval.tenant_id
    rebound = [item.entity_key for item in decided.items if item.binding_change() is not None]
    if rebound:
        lineage.refresh_dependents(uow, settings, tenant_id, rebound)
    kpi_keys: Sequence[str] = [
        item.entity_key
        for item in decided.items
        if item.entity_type is EntityType.KPI and item.binding_change() is None
    ]
    if kpi_keys:
        kpis = uow.entities.get_many(EntityType.KPI, [(tenant_id, key) for key in kpi_keys])
        active = [kpi for kpi in kpis.values() if kpi.status is EntityStatus.ACTIVE]
        lineage.record_trust(uow, settings, tenant_id, active)
